"""The models page's static parts: its stylesheet, its nav icon and its one script (``frame.js``)."""

from __future__ import annotations

# The nav icon: a model version stack with a check mark (20x20, currentColor-free so it shows on both themes).
ICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" fill="none" stroke="#0194e2" stroke-width="2" '
    'stroke-linecap="round" stroke-linejoin="round"><path d="M12 2 3 7l9 5 9-5-9-5z"/><path d="m3 12 9 5 9-5"/>'
    '<path d="m3 17 9 5 9-5"/></svg>'
)
# In the Airflow UI's frame (sandboxed without allow-popups), open new tabs from the Airflow window instead.
FRAME_JS = """(function () {
  var frame = null;
  try { frame = window.frameElement; } catch (err) { return; }
  var sandbox = frame && frame.getAttribute("sandbox");
  if (sandbox === null || sandbox === undefined || /(^|\\s)allow-popups(\\s|$)/.test(sandbox)) { return; }
  document.documentElement.setAttribute("data-frame-links", "parent");
  document.addEventListener("click", function (event) {
    var link = event.target.closest ? event.target.closest('a[target="_blank"]') : null;
    if (!link || event.defaultPrevented || event.button !== 0) { return; }
    event.preventDefault();
    var tab = window.parent.open(link.href, "_blank");
    if (tab) { tab.opener = null; } else { window.location.assign(link.href); }
  });
})();
"""

CSS = """
:root { --fg:#1f2933; --muted:#667085; --line:#e4e7ec; --bg:#f8f9fb; --card:#fff; --ok:#067647; --okbg:#dcfae6;
  --bad:#b42318; --badbg:#fee4e2; --accent:#0194e2; }
* { box-sizing: border-box; }
body { margin:0; padding:20px 24px; font:14px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
  sans-serif; color:var(--fg); background:var(--bg); }
header { display:flex; align-items:baseline; justify-content:space-between; gap:16px; margin-bottom:16px; }
h1 { font-size:20px; margin:0; } h2 { font-size:17px; margin:0; } h3 { font-size:13px; margin:16px 0 6px;
  text-transform:uppercase; letter-spacing:.04em; color:var(--muted); } h4 { margin:0 0 6px; font-size:14px; }
a { color:var(--accent); text-decoration:none; } a:hover { text-decoration:underline; }
.card { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:16px 18px; margin-bottom:18px;
  box-shadow:0 1px 2px rgba(16,24,40,.04); }
.card-head { display:flex; align-items:baseline; gap:12px; flex-wrap:wrap; }
table { width:100%; border-collapse:collapse; font-size:13px; }
th, td { text-align:left; padding:6px 8px; border-bottom:1px solid var(--line); vertical-align:top; }
th { font-size:12px; color:var(--muted); font-weight:600; }
tr:last-child td { border-bottom:none; }
code { font:12px/1.3 ui-monospace, SFMono-Regular, Menlo, monospace; background:#f2f4f7; padding:1px 4px;
  border-radius:4px; }
.muted { color:var(--muted); } .small { font-size:12px; }
.num { font-variant-numeric:tabular-nums; white-space:nowrap; }
.badge { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px; font-weight:600;
  vertical-align:1px; }
.badge.ok { color:var(--ok); background:var(--okbg); } .badge.bad { color:var(--bad); background:var(--badbg); }
.badge.unknown { color:var(--muted); background:#f2f4f7; }
.alias { display:inline-block; padding:1px 8px; border-radius:4px; font-size:12px; font-weight:600; background:#eef4ff;
  color:#3538cd; } .alias-champion { background:#fef0c7; color:#93370d; }
.alias-challenger { background:#f4f3ff; color:#5925dc; } .alias-canary { background:#ecfdf3; color:#067647; }
.alias-shadow { background:#f2f4f7; color:#344054; }
.state { display:inline-block; padding:1px 8px; border-radius:4px; font-size:12px; font-weight:600;
  background:#f2f4f7; color:#475467; } .state-rejected, .state-refused { background:#fee4e2; color:#b42318; }
.state-rolled-back { background:#fef0c7; color:#b54708; } .state-retired, .state-registered { font-weight:400; }
.msrc { white-space:nowrap; } .src { font-size:11px; color:var(--muted); font-style:italic; margin-right:4px; }
.reason { font-style:italic; }
.metric { display:inline-block; margin-right:10px; white-space:nowrap; font-size:12px; color:var(--muted); }
.metric b { color:var(--fg); font-weight:600; }
.verdicts { display:grid; grid-template-columns:1fr 1fr; gap:12px; }
.verdict { border:1px solid var(--line); border-radius:6px; padding:10px 12px; background:#fcfcfd; }
.verdict p { margin:4px 0; }
.hint { border:1px solid var(--line); background:#f9fafb; color:var(--muted); font-size:12px; padding:6px 10px;
  border-radius:6px; margin-bottom:12px; }
.error { border:1px solid #fda29b; background:#fef3f2; color:var(--bad); padding:12px 14px; border-radius:8px; }
"""
