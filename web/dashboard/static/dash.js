// Live refresh for the shoestring dashboard: every 2 s, fetch the page's live part as an
// HTML fragment (the server renders it; no data is turned into markup here) and swap it
// in. The pages work without this script: it only saves a reload.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !live.dataset.refresh || !window.fetch) return;
  var status = document.getElementById("live-status");
  var inflight = false;
  function tick() {
    if (inflight || document.hidden) return;
    // Do not swap the form under a pointer or a focused control.
    var active = document.activeElement;
    if (active && active !== document.body && live.contains(active)) return;
    inflight = true;
    fetch(live.dataset.refresh, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) {
        if (r.redirected || r.status === 401) { window.location.reload(); throw new Error("logged out"); }
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.text();
      })
      .then(function (html) {
        live.innerHTML = html;
        if (status) { status.textContent = "Live: refreshed " + new Date().toLocaleTimeString() + ", every 2 s."; status.className = "muted"; }
      })
      .catch(function (e) {
        if (status) { status.textContent = "Live refresh failing (" + e.message + "); retrying."; status.className = "err-text"; }
      })
      .then(function () { inflight = false; });
  }
  window.setInterval(tick, 2000);
})();
