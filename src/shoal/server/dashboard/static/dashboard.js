// Live views: every 700 ms, re-read this page and swap in the fresh content of each element marked data-live
// (same id). A data-follow element that was scrolled to its end stays at its end (a log being followed).
(function () {
  "use strict";
  var INTERVAL = 700;
  function live() { return document.querySelectorAll("[data-live]"); }
  if (!live().length) { return; }
  var busy = false;
  function atEnd(el) { return el.scrollTop + el.clientHeight >= el.scrollHeight - 24; }
  function refresh() {
    if (busy || document.hidden) { return; }
    busy = true;
    fetch(location.href, { headers: { "X-Shoal-Live": "1" }, credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.redirected || !r.ok) { throw new Error("status " + r.status); }
        return r.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        live().forEach(function (el) {
          var fresh = doc.getElementById(el.id);
          if (!fresh || fresh.innerHTML === el.innerHTML) { return; }
          var follow = el.hasAttribute("data-follow") && atEnd(el);
          var open = Array.prototype.map.call(el.querySelectorAll("details[open]"), function (d) { return d.id || d.textContent.slice(0, 80); });
          el.innerHTML = fresh.innerHTML;
          el.querySelectorAll("details").forEach(function (d) {
            if (open.indexOf(d.id || d.textContent.slice(0, 80)) >= 0) { d.open = true; }
          });
          if (follow) { el.scrollTop = el.scrollHeight; }
        });
        document.body.setAttribute("data-updated", String(Date.now()));
      })
      .catch(function () { /* the server is away for a moment: try again next tick */ })
      .then(function () { busy = false; });
  }
  document.querySelectorAll("[data-follow]").forEach(function (el) { el.scrollTop = el.scrollHeight; });
  setInterval(refresh, INTERVAL);
})();
