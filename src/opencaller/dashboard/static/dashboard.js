// Progressive enhancement for the dashboard. Every page works without this file; with it:
// - [data-copy]: copy the text of another element to the clipboard;
// - [data-reveal]: mask a secret until asked to show it;
// - form[data-confirm]: ask before a destructive action;
// - form[data-autosubmit]: submit when a select changes;
// - form[data-live="#id"] and a[data-swap]: fetch the page and swap one region in place,
//   keeping the URL in the address bar (a tiny htmx-like swap).
(function () {
  "use strict";

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    try { document.execCommand("copy"); } finally { document.body.removeChild(area); }
    return Promise.resolve();
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (button) {
      var source = document.querySelector(button.getAttribute("data-copy"));
      if (!source) return;
      var label = button.textContent;
      copyText(source.textContent.trim()).then(function () {
        button.textContent = button.getAttribute("data-copied") || "✓";
        button.classList.add("done");
        setTimeout(function () { button.textContent = label; button.classList.remove("done"); }, 1500);
      });
      return;
    }
    var reveal = event.target.closest("[data-reveal]");
    if (reveal) {
      var secret = document.querySelector(reveal.getAttribute("data-reveal"));
      var hidden = secret.classList.toggle("masked");
      var other = reveal.getAttribute("data-hide");
      reveal.setAttribute("data-hide", reveal.textContent);
      reveal.textContent = other;
      reveal.setAttribute("aria-pressed", hidden ? "false" : "true");
    }
  });

  // Secrets start masked only when this script runs, so without it they are plainly visible.
  document.querySelectorAll("[data-reveal]").forEach(function (button) {
    var secret = document.querySelector(button.getAttribute("data-reveal"));
    if (secret) secret.classList.add("masked");
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
      return;
    }
    var target = form.getAttribute("data-live");
    if (target && form.method.toLowerCase() === "get") {
      event.preventDefault();
      var params = new URLSearchParams(new FormData(form));
      Array.from(params.keys()).forEach(function (k) { if (!params.get(k)) params.delete(k); });
      swap(form.action.split("?")[0] + (params.toString() ? "?" + params : ""), target);
    }
  });

  document.addEventListener("change", function (event) {
    var form = event.target.form;
    if (form && form.hasAttribute("data-autosubmit")) form.submit();
  });

  document.addEventListener("click", function (event) {
    var link = event.target.closest("a[data-swap]");
    var region = link && link.closest("[id]");
    if (!link || !region || event.ctrlKey || event.metaKey || event.shiftKey) return;
    event.preventDefault();
    swap(link.href, "#" + region.id);
  });

  function swap(url, selector) {
    var region = document.querySelector(selector);
    if (!region) { window.location.href = url; return; }
    region.classList.add("loading");
    fetch(url, { headers: { "X-Requested-With": "fetch" }, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok || response.redirected) throw new Error("reload");
        return response.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.querySelector(selector);
        if (!fresh) throw new Error("reload");
        region.replaceWith(fresh);
        history.pushState({}, "", url);
      })
      .catch(function () { window.location.href = url; });
  }

  window.addEventListener("popstate", function () { window.location.reload(); });
})();
