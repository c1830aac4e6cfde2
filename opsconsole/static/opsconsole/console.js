// Behaviour of the staff pages, kept out of the templates so that the Content-Security-Policy
// can refuse every inline script (script-src 'self'). Loaded with "defer": the DOM is ready.
(function () {
  "use strict";

  // <select data-autosubmit> submits its form when changed (filters on list pages).
  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target && target.hasAttribute && target.hasAttribute("data-autosubmit") && target.form) {
      target.form.submit();
    }
  });

  // Dashboard: swaps in the server-rendered body every few seconds; the markup is escaped on
  // the server, and scripts inside HTML inserted this way never run.
  function dashboardRefresh(root) {
    var url = root.getAttribute("data-fragment-url");
    var every = parseInt(root.getAttribute("data-refresh-seconds"), 10) * 1000 || 15000;
    function refresh() {
      fetch(url, {credentials: "same-origin", headers: {"X-Requested-With": "fetch"}})
        .then(function (r) { if (!r.ok || r.redirected) throw new Error(r.status); return r.text(); })
        .then(function (html) {
          root.innerHTML = html;
          var fresh = root.querySelector("[data-overall]");
          var header = document.getElementById("overall-state");
          if (fresh && header) header.innerHTML = fresh.innerHTML;
        })
        .catch(function () {
          var note = root.querySelector(".refresh-note");
          if (note) note.textContent = "Refresh failed; retrying.";
        });
    }
    setInterval(refresh, every);
  }

  // Batch detail: re-fetch the server-rendered progress card while the batch is active.
  function batchProgress(card) {
    var url = card.getAttribute("data-progress-url");
    var timer = setInterval(function () {
      var box = document.getElementById("batch-progress");
      if (box && box.getAttribute("data-active") !== "1") { clearInterval(timer); return; }
      fetch(url, {credentials: "same-origin"})
        .then(function (r) { if (!r.ok || r.redirected) throw new Error(r.status); return r.text(); })
        .then(function (html) { card.innerHTML = html; })
        .catch(function () {});
    }, 3000);
  }

  // <button data-copy-target="ID"> copies the text of element ID (a heartbeat's ping URL).
  // Without the clipboard API (plain http on another host) the text is selected and copied the
  // old way, or left selected for Ctrl+C.
  document.addEventListener("click", function (event) {
    var button = event.target && event.target.closest ? event.target.closest("[data-copy-target]") : null;
    if (!button) return;
    var source = document.getElementById(button.getAttribute("data-copy-target"));
    if (!source) return;
    var text = source.textContent.trim();
    var label = button.getAttribute("data-label") || button.textContent;
    button.setAttribute("data-label", label);
    function say(words) {
      button.textContent = words;
      setTimeout(function () { button.textContent = label; }, 2000);
    }
    function fallback() {
      var selection = window.getSelection();
      selection.selectAllChildren(source);
      var copied = false;
      try { copied = document.execCommand("copy"); } catch (e) { copied = false; }
      say(copied ? "Copied" : "Selected: press Ctrl+C");
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { say("Copied"); }, fallback);
    } else {
      fallback();
    }
  });

  if (!window.fetch) return;
  var dashboard = document.getElementById("dashboard");
  if (dashboard && dashboard.hasAttribute("data-fragment-url")) dashboardRefresh(dashboard);
  var card = document.getElementById("progress-card");
  if (card && card.hasAttribute("data-progress-url")) batchProgress(card);
})();
