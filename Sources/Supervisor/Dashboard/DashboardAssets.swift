import BotData

/// Everything the dashboard's pages load, embedded: nothing comes from another host, and the
/// Content-Security-Policy (`DashboardRoutes.headers`) allows only this origin. The pages build
/// their content with DOM calls and `textContent` (never `innerHTML` with data), so a log line or
/// a member's name cannot become markup.
enum DashboardAssets {
    static let titles = [
        "overview": "Overview", "health": "Health checks", "backups": "Backups", "alerts": "Alerts",
        "restarts": "Restarts", "logs": "Logs", "charts": "Charts",
    ]

    /// The page shell: the navigation, an empty main, the session's CSRF token for the buttons.
    static func shell(page: String, csrf: String) -> String {
        let nav = DashboardRoutes.pages.map { name -> String in
            let href = name == "overview" ? "/" : "/" + name
            return "<a href=\"\(href)\"\(name == page ? " class=\"here\" aria-current=\"page\"" : "")>\(titles[name] ?? name)</a>"
        }.joined()
        return """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <meta name="csrf" content="\(csrf)">
        <title>\(titles[page] ?? page) · bot-supervisor</title>
        <link rel="stylesheet" href="/assets/app.css"></head>
        <body data-page="\(page)">
        <header><span class="brand">bot-supervisor</span><span id="live" class="live off" title="live updates">●</span><nav>\(nav)</nav>
        <form method="post" action="/logout" id="logout-form"><button type="submit" id="logout">Log out</button></form></header>
        <main id="main"><p class="muted">Loading…</p></main>
        <script src="/assets/app.js"></script>
        </body></html>
        """
    }

    static let login = """
    <!doctype html>
    <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
    <title>Log in · bot-supervisor</title><link rel="stylesheet" href="/assets/app.css"></head>
    <body><main class="narrow"><h1>bot-supervisor</h1>
    <p>Log in with the link <code>bot-supervisor dashboard-url</code> prints, or with the token in <code>dashboard.token</code> in the data directory.</p>
    <form method="post" action="/login"><label>Token <input type="password" name="token" id="token" autocomplete="current-password" required></label>
    <button type="submit" id="login">Log in</button></form></main></body></html>
    """

    static let tooMany = """
    <!doctype html>
    <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
    <title>Too many attempts</title><link rel="stylesheet" href="/assets/app.css"></head>
    <body><main class="narrow"><h1>Too many attempts</h1><p>Wait a minute, then try again.</p></main></body></html>
    """

    static let notPublic = """
    <!doctype html>
    <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
    <title>Not public</title><link rel="stylesheet" href="/assets/app.css"></head>
    <body><main class="narrow"><h1 id="not-public">This leaderboard is not public</h1>
    <p>A server's admins can publish it with <code>/levels config leaderboard:public</code>.</p></main></body></html>
    """

    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.count)
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(character)
            }
        }
        return out
    }

    /// A guild's public leaderboard: rank, name, level and XP, nothing else.
    static func leaderboard(guild: String, rows: [PublicLeaderboard.Row]) -> String {
        let body = rows.map { "<tr><td>\($0.rank)</td><td>\(escape($0.name))</td><td>\($0.level)</td><td>\($0.xp)</td></tr>" }.joined()
        return """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
        <title>Leaderboard</title><link rel="stylesheet" href="/assets/app.css"></head>
        <body><main class="narrow"><h1>Leaderboard</h1>
        <div class="scroll"><table id="leaderboard"><thead><tr><th>Rank</th><th>Name</th><th>Level</th><th>XP</th></tr></thead>
        <tbody>\(body.isEmpty ? "<tr><td colspan=\"4\" class=\"muted\">No one has XP yet.</td></tr>" : body)</tbody></table></div>
        </main></body></html>
        """
    }

    static let css = #"""
    :root { --bg: #f6f7f9; --card: #fff; --text: #1d2330; --muted: #667085; --line: #e3e6eb; --ok: #1a7f37; --warn: #9a6700; --bad: #cf222e; --accent: #3451b2; }
    @media (prefers-color-scheme: dark) { :root { --bg: #14161b; --card: #1d2027; --text: #e6e8ec; --muted: #9aa3b2; --line: #2c313a; --ok: #3fb950; --warn: #d29922; --bad: #f85149; --accent: #8ca4ff; } }
    * { box-sizing: border-box; }
    body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; background: var(--bg); color: var(--text); }
    header { display: flex; flex-wrap: wrap; align-items: center; gap: .5rem 1rem; padding: .6rem 1rem; background: var(--card); border-bottom: 1px solid var(--line); }
    .brand { font-weight: 700; }
    nav { display: flex; flex-wrap: wrap; gap: .25rem .75rem; flex: 1; }
    nav a { color: var(--muted); text-decoration: none; padding: .15rem 0; }
    nav a.here { color: var(--accent); font-weight: 600; border-bottom: 2px solid var(--accent); }
    header form { margin: 0; }
    main { padding: 1rem; max-width: 1200px; margin: 0 auto; }
    main.narrow { max-width: 640px; }
    h1 { font-size: 1.3rem; } h2 { font-size: 1.05rem; margin: 0 0 .5rem; }
    .grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(260px, 1fr)); gap: 1rem; }
    .card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: .9rem 1rem; min-width: 0; overflow-wrap: anywhere; }
    dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem .8rem; margin: 0; }
    dt { color: var(--muted); } dd { margin: 0; overflow-wrap: anywhere; }
    .muted { color: var(--muted); }
    .ok { color: var(--ok); } .warn, .warning, .lagging, .seeding, .starting, .backoff, .stopping { color: var(--warn); }
    .critical, .bad, .failed, .down, .error, .crash-loop, .unhealthy { color: var(--bad); }
    .ready, .running, .connected { color: var(--ok); }
    .scroll { overflow-x: auto; }
    table { border-collapse: collapse; width: 100%; background: var(--card); }
    th, td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
    th { color: var(--muted); font-weight: 600; }
    button { font: inherit; padding: .4rem .8rem; border-radius: 6px; border: 1px solid var(--line); background: var(--card); color: var(--text); cursor: pointer; }
    button.primary { background: var(--accent); border-color: var(--accent); color: #fff; }
    button:disabled { opacity: .6; cursor: wait; }
    .actions { display: flex; flex-wrap: wrap; gap: .5rem; margin: 0 0 1rem; align-items: center; }
    #action-result { margin-left: .25rem; }
    input, select { font: inherit; padding: .3rem .4rem; border: 1px solid var(--line); border-radius: 6px; background: var(--card); color: var(--text); max-width: 100%; }
    .filters { display: flex; flex-wrap: wrap; gap: .5rem; margin-bottom: .75rem; align-items: end; }
    .filters label { display: flex; flex-direction: column; font-size: .85rem; color: var(--muted); }
    #log-lines { font: 12.5px/1.4 ui-monospace, SFMono-Regular, Menlo, monospace; background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: .5rem; max-height: 70vh; overflow: auto; }
    .log { white-space: pre-wrap; overflow-wrap: anywhere; border-bottom: 1px dashed var(--line); padding: .1rem 0; }
    .log .lvl { display: inline-block; min-width: 4.5em; font-weight: 600; }
    pre { white-space: pre-wrap; overflow-wrap: anywhere; font-size: 12px; max-height: 50vh; overflow: auto; background: var(--bg); padding: .5rem; border-radius: 6px; }
    details { margin-top: .3rem; }
    .chart svg { width: 100%; height: 160px; display: block; }
    .chart .axis { stroke: var(--line); } .chart .l1 { stroke: var(--accent); fill: none; stroke-width: 1.5; } .chart .l2 { stroke: var(--warn); fill: none; stroke-width: 1.5; }
    .chart text { fill: var(--muted); font-size: 11px; }
    .live { font-size: .8rem; } .live.on { color: var(--ok); } .live.off { color: var(--bad); }
    .big { font-size: 1.6rem; font-weight: 650; }
    code { font-family: ui-monospace, monospace; font-size: .9em; }
    @media (max-width: 480px) { main { padding: .6rem; } header { padding: .5rem .6rem; } header form { margin-left: auto; } nav { order: 3; flex-basis: 100%; gap: .1rem .8rem; } th, td { padding: .3rem .35rem; } .grid { gap: .6rem; } }
    """#

    static let script = #"""
    "use strict";
    const page = document.body.dataset.page;
    const csrf = document.querySelector('meta[name="csrf"]').content;
    const main = document.getElementById('main');
    let status = null, backups = [], restarts = [], samples = [];
    let lastBackupId = null, lastRestartKey = null, lastReceived = null, eventsPerSecond = null;

    function el(tag, attrs, ...children) {
      const node = document.createElement(tag);
      for (const [key, value] of Object.entries(attrs || {})) {
        if (value === null || value === undefined || value === false) continue;
        if (key === 'class') node.className = value; else if (key.startsWith('on')) node.addEventListener(key.slice(2), value); else node.setAttribute(key, value);
      }
      for (const child of children.flat()) {
        if (child === null || child === undefined) continue;
        node.append(child instanceof Node ? child : document.createTextNode(String(child)));
      }
      return node;
    }
    const span = (text, cls, id) => el('span', { class: cls, id }, text ?? '—');
    const card = (title, ...body) => el('section', { class: 'card' }, el('h2', {}, title), ...body);
    const dl = (pairs) => el('dl', {}, pairs.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
    const table = (id, heads, rows) => el('div', { class: 'scroll' }, el('table', { id }, el('thead', {}, el('tr', {}, heads.map(h => el('th', {}, h)))), el('tbody', {}, rows)));

    function ago(iso) {
      if (!iso) return '—';
      const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
      if (s < 60) return Math.round(s) + ' s ago';
      if (s < 3600) return Math.round(s / 60) + ' min ago';
      if (s < 86400) return (s / 3600).toFixed(1) + ' h ago';
      return (s / 86400).toFixed(1) + ' d ago';
    }
    function duration(iso) {
      if (!iso) return '—';
      let s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
      const d = Math.floor(s / 86400); s -= d * 86400; const h = Math.floor(s / 3600); s -= h * 3600; const m = Math.floor(s / 60); s -= m * 60;
      return (d ? d + 'd ' : '') + (d || h ? h + 'h ' : '') + (d || h || m ? m + 'm ' : '') + s + 's';
    }
    const mb = (bytes) => bytes == null ? '—' : (bytes / 1048576).toFixed(1) + ' MB';
    const ms = (v) => v == null ? '—' : (Math.round(v * 10) / 10) + ' ms';
    const when = (iso) => iso ? new Date(iso).toLocaleString() : '—';

    async function api(path) {
      const response = await fetch(path, { credentials: 'same-origin' });
      if (response.status === 401) { location.reload(); throw new Error('logged out'); }
      return response.json();
    }

    async function act(action, button) {
      const result = document.getElementById('action-result');
      button.disabled = true; result.textContent = button.textContent + '…'; result.className = 'muted';
      try {
        const response = await fetch('/api/actions/' + action, { method: 'POST', credentials: 'same-origin', headers: { 'X-CSRF-Token': csrf } });
        const body = await response.json().catch(() => ({ ok: false, error: { message: 'HTTP ' + response.status } }));
        if (body.ok) {
          const r = body.result || {};
          result.textContent = r.message || (r.id ? 'backup ' + r.id + ' taken' : r.status ? 'health: ' + r.status : 'done');
          result.className = 'ok';
        } else {
          result.textContent = (body.error && body.error.message) || 'failed'; result.className = 'bad';
        }
        if (action === 'backup') await loadBackups();
      } catch (e) { result.textContent = String(e); result.className = 'bad'; }
      button.disabled = false;
    }
    function buttons(...which) {
      const all = { backup: ['btn-backup', 'Take a backup'], 'restart-worker': ['btn-restart', 'Restart the worker'], health: ['btn-health', 'Run the health checks'] };
      return el('div', { class: 'actions' }, which.map(a => { const b = el('button', { id: all[a][0], class: 'primary', onclick: () => act(a, b) }, all[a][1]); return b; }), el('span', { id: 'action-result' }));
    }

    function overview() {
      const s = status, w = s.worker, d = w.discord || {}, e = w.events || {}, sess = w.sessions || {};
      return [buttons('backup', 'restart-worker', 'health'), el('div', { class: 'grid' },
        card('Worker', dl([['state', span(w.state, w.state, 'worker-state')], ['pid', span(w.pid, null, 'worker-pid')], ['up', duration(w.startedAt)],
          ['restarts', span(w.restarts, null, 'worker-restarts')], ['last exit', w.lastExit ? w.lastExit.reason + ' (' + ago(w.lastExit.at) + ')' : '—'],
          ['memory', mb(w.rssBytes)], ['heartbeat', w.lastHeartbeatAgeMs == null ? '—' : w.lastHeartbeatAgeMs + ' ms ago']])),
        card('Discord', dl([['gateway', span(d.gatewayState, d.gatewayState === 'connected' ? 'ok' : 'warn', 'gateway-state')], ['mode', d.mode], ['latency', ms(d.latencyMs)],
          ['guilds', d.guilds], ['last event', d.lastEventAgeMs == null ? '—' : (d.lastEventAgeMs / 1000).toFixed(1) + ' s ago'],
          ['sessions', (sess.resumes ?? 0) + ' resumed, ' + (sess.identifies ?? 0) + ' identified']])),
        card('Events', el('div', { class: 'big', id: 'events-rate' }, eventsPerSecond == null ? '—' : eventsPerSecond.toFixed(1) + '/s'),
          dl([['received', e.received], ['failed', e.failed], ['event → commit', ms(e.writeLatencyP50Ms) + ' p50, ' + ms(e.writeLatencyP99Ms) + ' p99'],
            ['commands', (e.commandsSucceeded ?? 0) + ' ok, ' + (e.commandsFailed ?? 0) + ' failed']])),
        card('Supervisor', dl([['state', span(s.supervisor.state, s.supervisor.state)], ['pid', s.supervisor.pid], ['version', s.supervisor.version],
          ['up', duration(s.supervisor.startedAt)], ['memory', mb(s.supervisor.rssBytes)],
          ['health', span(s.health ? s.health.status : null, s.health ? s.health.status : null)], ['last backup', s.backups && s.backups.last ? ago(s.backups.last.at) : '—']])),
        card('Alerts', s.alerts.length ? el('ul', { id: 'overview-alerts' }, s.alerts.slice(0, 5).map(a => el('li', {}, span(a.severity, a.severity), ' ', a.message, ' ', span(ago(a.at), 'muted'))))
          : el('p', { class: 'muted' }, 'No alerts.'))),
        el('h2', { style: 'margin-top:1rem' }, 'Shards'),
        (d.shards || []).length ? table('shard-list', ['shard', 'state', 'guilds', 'events/s', 'latency', 'last event', 'resumed', 'identified'], d.shards.map(sh => el('tr', { 'data-shard': sh.id },
          el('td', {}, sh.id), el('td', {}, span(sh.state, sh.state === 'connected' ? 'ok' : 'warn')), el('td', {}, sh.guilds), el('td', {}, sh.eventsPerSecond.toFixed(1)),
          el('td', {}, ms(sh.latencyMs)), el('td', {}, sh.lastEventAgeMs == null ? '—' : (sh.lastEventAgeMs / 1000).toFixed(1) + ' s ago'), el('td', {}, sh.resumes), el('td', {}, sh.identifies))))
          : el('p', { class: 'muted', id: 'shard-list' }, 'No Gateway shard is running.')];
    }

    function health() {
      const h = status.health;
      return [buttons('health'), h ? [el('p', {}, 'Overall ', span(h.status, h.status, 'health-status'), ', last run ', ago(h.lastRunAt)),
        table('health-checks', ['check', 'status', 'detail'], h.checks.map(c => el('tr', {}, el('td', {}, c.name), el('td', {}, span(c.status, c.status)), el('td', {}, c.detail))))]
        : el('p', { class: 'muted' }, 'No health run yet.')];
    }

    function backupsPage() {
      const reps = status.replicas || [];
      return [buttons('backup'), el('h2', {}, 'Backups'),
        table('backup-list', ['id', 'taken', 'reason', 'size', 'verified', 'locations'], backups.map(b => el('tr', { 'data-id': b.id }, el('td', {}, b.id), el('td', {}, when(b.at) + ' (' + ago(b.at) + ')'),
          el('td', {}, b.reason), el('td', {}, mb(b.sizeBytes)), el('td', {}, span(b.verified ? 'verified' : 'not verified', b.verified ? 'ok' : 'bad')), el('td', {}, (b.locations || []).join(', '))))),
        el('h2', { style: 'margin-top:1rem' }, 'Replicas'),
        reps.length ? table('replica-list', ['name', 'state', 'lag', 'last sequence', 'shipped', 'bytes', 'last error', 'drill'], reps.map(r => el('tr', {},
          el('td', {}, r.name), el('td', {}, span(r.state, r.state)), el('td', {}, r.lagSeconds + ' s'), el('td', {}, r.lastSequence), el('td', {}, ago(r.lastShippedAt)),
          el('td', {}, mb(r.bytes)), el('td', {}, r.lastError || '—'), el('td', {}, r.drill && r.drill.result ? span(r.drill.result + ' ' + ago(r.drill.at), r.drill.result) : '—'))))
          : el('p', { class: 'muted' }, 'No replica is configured (replicas.targets).')];
    }

    function alertsPage() {
      return status.alerts.length ? table('alert-list', ['when', 'severity', 'message'], status.alerts.map(a => el('tr', {}, el('td', {}, when(a.at)), el('td', {}, span(a.severity, a.severity)), el('td', {}, a.message))))
        : el('p', { class: 'muted' }, 'No alerts since the supervisor started.');
    }

    function restartsPage() {
      return restarts.length ? el('div', { id: 'restart-list' }, restarts.map(r => el('section', { class: 'card restart', 'data-pid': r.pid, style: 'margin-bottom:.75rem' },
        el('h2', {}, 'pid ' + (r.pid ?? '?') + ' · ' + r.reason), dl([['when', when(r.at) + ' (' + ago(r.at) + ')'], ['exit', r.signal ? 'signal ' + r.signal : 'code ' + r.code], ['restarts after', r.restarts]]),
        r.backtrace.length ? el('details', {}, el('summary', {}, 'Backtrace (' + r.backtrace.length + ' lines)'), el('pre', {}, r.backtrace.join('\n'))) : null,
        r.lastOutput.length ? el('details', {}, el('summary', {}, 'Last output'), el('pre', {}, r.lastOutput.join('\n'))) : null)))
        : el('p', { class: 'muted', id: 'restart-list' }, 'The worker has not exited since the supervisor started.');
    }

    let logSource = null;
    function logLine(l) {
      return el('div', { class: 'log', 'data-level': l.level }, span(l.ts.slice(11, 23), 'muted'), ' ', el('span', { class: 'lvl ' + l.level }, l.level), ' ', span(l.system, 'muted'), ' ', l.message, ' ',
        span(fields(l.json), 'muted'));
    }
    function fields(json) {
      try { const o = JSON.parse(json); for (const k of ['ts', 'level', 'system', 'message']) delete o[k]; const t = Object.entries(o).map(([k, v]) => k + '=' + (typeof v === 'string' ? v : JSON.stringify(v))).join(' '); return t.length > 400 ? t.slice(0, 400) + '…' : t; } catch { return ''; }
    }
    function logsPage() {
      const systems = ['', 'supervisor', 'bot', 'database', 'verification', 'xp', 'role_connections', 'errors', 'audit'];
      const form = el('form', { class: 'filters', id: 'log-filters', onsubmit: (ev) => { ev.preventDefault(); loadLogs(); } },
        el('label', {}, 'System', el('select', { id: 'log-system' }, systems.map(s => el('option', { value: s }, s || 'all')))),
        el('label', {}, 'Level', el('select', { id: 'log-level' }, ['', 'debug', 'info', 'warning', 'error', 'critical'].map(s => el('option', { value: s }, s || 'any')))),
        el('label', {}, 'Text', el('input', { id: 'log-grep', type: 'search', placeholder: 'contains…' })),
        el('label', {}, 'Since', el('input', { id: 'log-since', type: 'datetime-local' })),
        el('button', { type: 'submit', class: 'primary', id: 'log-apply' }, 'Apply'));
      return [form, el('p', { class: 'muted' }, 'Newest at the bottom; new lines appear as they are written.'), el('div', { id: 'log-lines' })];
    }
    function logQuery() {
      const q = new URLSearchParams();
      const v = (id) => document.getElementById(id).value;
      if (v('log-system')) q.set('system', v('log-system'));
      if (v('log-level')) q.set('level', v('log-level'));
      if (v('log-grep')) q.set('grep', v('log-grep'));
      if (v('log-since')) q.set('since', new Date(v('log-since')).toISOString());
      return q.toString();
    }
    async function loadLogs() {
      const box = document.getElementById('log-lines'), query = logQuery();
      if (logSource) logSource.close();
      const lines = await api('/api/logs?' + query);
      box.replaceChildren(...lines.map(logLine));
      box.dataset.filter = query;
      box.scrollTop = box.scrollHeight;
      logSource = new EventSource('/api/logs/stream?' + query);
      logSource.addEventListener('log', (ev) => {
        const atEnd = box.scrollTop + box.clientHeight >= box.scrollHeight - 30;
        box.append(logLine(JSON.parse(ev.data)));
        while (box.childElementCount > 2000) box.firstChild.remove();
        if (atEnd) box.scrollTop = box.scrollHeight;
      });
    }

    function chart(title, id, series, format) {
      const width = 600, height = 160, pad = 34;
      const points = samples.filter(s => series.some(f => f(s) != null));
      const box = el('section', { class: 'card chart', id }, el('h2', {}, title));
      if (points.length < 2) { box.append(el('p', { class: 'muted' }, 'Collecting samples (one every 10 s)…')); return box; }
      const t0 = points[0].t, t1 = points[points.length - 1].t;
      const max = Math.max(1e-9, ...points.flatMap(s => series.map(f => f(s) ?? 0)));
      const ns = 'http://www.w3.org/2000/svg';
      const svg = document.createElementNS(ns, 'svg'); svg.setAttribute('viewBox', `0 0 ${width} ${height}`); svg.setAttribute('preserveAspectRatio', 'none');
      const line = (x1, y1, x2, y2) => { const l = document.createElementNS(ns, 'line'); Object.entries({ x1, y1, x2, y2, class: 'axis' }).forEach(([k, v]) => l.setAttribute(k, v)); svg.append(l); };
      line(pad, height - 18, width, height - 18); line(pad, 4, pad, height - 18);
      const text = (x, y, t) => { const n = document.createElementNS(ns, 'text'); n.setAttribute('x', x); n.setAttribute('y', y); n.textContent = t; svg.append(n); };
      text(0, 12, format(max)); text(0, height - 20, format(0));
      text(pad, height - 4, new Date(t0 * 1000).toLocaleTimeString()); text(width - 70, height - 4, new Date(t1 * 1000).toLocaleTimeString());
      series.forEach((f, i) => {
        const d = points.filter(s => f(s) != null).map((s, j) => (j ? 'L' : 'M') + (pad + (s.t - t0) / Math.max(1, t1 - t0) * (width - pad)).toFixed(1) + ',' + (height - 18 - f(s) / max * (height - 26)).toFixed(1)).join('');
        const p = document.createElementNS(ns, 'path'); p.setAttribute('d', d); p.setAttribute('class', 'l' + (i + 1)); svg.append(p);
      });
      box.append(svg);
      return box;
    }
    function chartsPage() {
      return [el('p', { class: 'muted' }, 'The last 24 hours, one sample every 10 s, kept by the supervisor.'), el('div', { class: 'grid' },
        chart('Events per second', 'chart-events', [s => s.eventsPerSecond], v => v.toFixed(1) + '/s'),
        chart('Event → commit latency (p50, p99)', 'chart-latency', [s => s.latencyP50Ms, s => s.latencyP99Ms], v => v.toFixed(1) + ' ms'),
        chart('Memory (worker, supervisor)', 'chart-memory', [s => s.workerRSS, s => s.supervisorRSS], v => (v / 1048576).toFixed(0) + ' MB'),
        chart('Restarts', 'chart-restarts', [s => s.restarts], v => v.toFixed(0)))];
    }

    async function loadBackups() { backups = await api('/api/backups'); if (page === 'backups') render(); }
    async function loadRestarts() { restarts = await api('/api/restarts'); if (page === 'restarts') render(); }
    async function loadSamples() { samples = await api('/api/samples'); if (page === 'charts') render(); }

    const pages = { overview, health, backups: backupsPage, alerts: alertsPage, restarts: restartsPage, charts: chartsPage };
    function render() {
      if (!status || page === 'logs') return;
      const open = [...main.querySelectorAll('details[open]')].map(d => d.parentElement.dataset.pid + d.querySelector('summary').textContent);
      const result = document.getElementById('action-result');
      const kept = result ? [result.textContent, result.className] : null;
      main.replaceChildren(...[pages[page]()].flat());
      main.querySelectorAll('details').forEach(d => { if (open.includes(d.parentElement.dataset.pid + d.querySelector('summary').textContent)) d.open = true; });
      const again = document.getElementById('action-result');
      if (again && kept) { again.textContent = kept[0]; again.className = kept[1]; }
    }

    function onStatus(next) {
      const received = next.worker.events ? next.worker.events.received : null, now = Date.now();
      if (received != null && lastReceived && lastReceived.pid === next.worker.pid && now > lastReceived.at) {
        eventsPerSecond = Math.max(0, (received - lastReceived.value) / ((now - lastReceived.at) / 1000));
      }
      if (received != null) lastReceived = { pid: next.worker.pid, value: received, at: now };
      status = next;
      const backupId = next.backups && next.backups.last ? next.backups.last.id : null;
      if (page === 'backups' && backupId !== lastBackupId) { lastBackupId = backupId; loadBackups(); }
      const restartKey = next.worker.restarts + '/' + (next.worker.lastExit ? next.worker.lastExit.at : '');
      if (page === 'restarts' && restartKey !== lastRestartKey) { lastRestartKey = restartKey; loadRestarts(); }
      render();
    }

    function connect() {
      const live = document.getElementById('live');
      const source = new EventSource('/api/events');
      source.addEventListener('status', (ev) => { live.className = 'live on'; onStatus(JSON.parse(ev.data).result); });
      // The stream retries by itself; a session that ended (a supervisor restart) goes to the login.
      source.onerror = () => { live.className = 'live off'; fetch('/api/status', { credentials: 'same-origin' }).then(r => { if (r.status === 401) location.reload(); }).catch(() => {}); };
    }

    if (page === 'logs') { main.replaceChildren(...logsPage()); loadLogs(); }
    if (page === 'charts') { loadSamples(); setInterval(loadSamples, 10000); }
    if (page === 'backups') loadBackups();
    if (page === 'restarts') loadRestarts();
    api('/api/status').then(body => onStatus(body.result)).catch(() => {});
    connect();
    """#
}
