// edged's page script: auto-refresh of live pages, filters that apply on change, no double submits.
// Loaded from /static (the Content-Security-Policy allows no inline script). It never inserts text
// as HTML of its own: refreshed content is the server's escaped page, parsed by DOMParser (whose
// scripts never run) and moved in as nodes.
(function () {
  "use strict";

  var timer = null;
  var period = 0;

  function busy() {
    var el = document.activeElement;
    if (el && /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName)) return true;
    return !!document.querySelector("form[data-dirty]");
  }

  function showConnection(ok) {
    var conn = document.getElementById("conn");
    if (conn) conn.hidden = ok;
    document.body.classList.toggle("offline", !ok);
  }

  function stamp() {
    var updated = document.getElementById("updated");
    if (updated) updated.textContent = "updated " + new Date().toLocaleTimeString();
  }

  function schedule(seconds) {
    if (timer) clearInterval(timer);
    timer = null;
    period = seconds;
    if (seconds > 0) timer = setInterval(refresh, seconds * 1000);
  }

  function refresh() {
    if (document.hidden || busy()) return;
    fetch(window.location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.status >= 500 && response.status !== 503) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (text) {
        var doc = new DOMParser().parseFromString(text, "text/html");
        var fresh = doc.getElementById("live");
        var live = document.getElementById("live");
        if (!fresh || !live) throw new Error("unexpected page");
        live.replaceWith(document.adoptNode(fresh));
        document.title = doc.title;
        showConnection(true);
        stamp();
        var next = parseFloat(doc.body.getAttribute("data-refresh") || "0") || 0;
        if (next !== period) schedule(next);
      })
      .catch(function () {
        showConnection(false);
      });
  }

  document.addEventListener("change", function (event) {
    var target = event.target;
    var form = target.form;
    if (!form) return;
    if (form.hasAttribute("data-autosubmit") && (target.tagName === "SELECT" || target.type === "checkbox")) {
      form.requestSubmit ? form.requestSubmit() : form.submit();
    } else if (form.method === "post") {
      form.setAttribute("data-dirty", "");
    }
  });

  document.addEventListener("input", function (event) {
    var form = event.target.form;
    if (form && form.method === "post") form.setAttribute("data-dirty", "");
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    form.removeAttribute("data-dirty");
    var button = form.querySelector("button[type=submit]");
    if (button) setTimeout(function () { button.disabled = true; }, 0);
  });

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && period > 0) refresh();
  });

  schedule(parseFloat(document.body.getAttribute("data-refresh") || "0") || 0);
})();
