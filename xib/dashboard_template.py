"""The ops dashboard's page (Jinja2; xib/dashboard.py fills it). Self-contained: no script, font or
image is fetched, the plots are inline SVG."""

TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>xib ops — {{ registry.model }}</title>
<style>
  :root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --ok: #1a7f37; --bad: #cf222e; --accent: #0969da; }
  body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); margin: 0; background: #f6f8fa; }
  header { background: #24292f; color: #fff; padding: 14px 28px; }
  header h1 { margin: 0; font-size: 20px; }
  header p { margin: 4px 0 0; color: #d0d7de; font-size: 12px; }
  main { padding: 16px 28px 40px; max-width: 1500px; }
  section { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 12px 18px; margin: 14px 0; }
  h2 { font-size: 16px; margin: 4px 0 10px; }
  h3 { font-size: 14px; margin: 14px 0 6px; }
  table { border-collapse: collapse; width: 100%; font-size: 13px; }
  th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
  th { background: #f6f8fa; font-weight: 600; }
  td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
  code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px; }
  .badge { display: inline-block; padding: 1px 8px; border-radius: 10px; color: #fff; font-size: 12px; font-weight: 600; }
  .promote { background: var(--ok); } .refuse { background: var(--bad); } .undecided { background: #6e7781; }
  .alias { display: inline-block; border: 1px solid var(--accent); color: var(--accent); border-radius: 10px; padding: 0 7px; font-size: 12px; margin-right: 3px; }
  .note { color: var(--muted); font-style: italic; }
  .failed { color: var(--bad); font-weight: 600; }
  .passed { color: var(--ok); }
  td.below { background: #ffebe9; color: var(--bad); font-weight: 600; }
  .cards { display: flex; gap: 14px; flex-wrap: wrap; }
  .card { border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; min-width: 160px; }
  .card .big { font-size: 24px; font-weight: 700; }
  .card .label { color: var(--muted); font-size: 12px; }
  ul.checks { margin: 4px 0 0; padding-left: 18px; }
  .plot svg { max-width: 100%; height: auto; }
  tr.failed-run td { background: #ffebe9; }
  .cause { color: var(--bad); font-weight: 600; }
  .stages { font-size: 12px; color: var(--muted); }
  .stage { display: inline-block; margin-right: 10px; }
  .evalplots img { max-width: 48%; border: 1px solid var(--line); margin: 4px; }
  td.floor, th.floor { color: var(--muted); }
</style>
</head>
<body>
<header>
  <h1>xib operations — model <code>{{ registry.model }}</code></h1>
  <p>generated {{ generated }} · registry <span class="mono">{{ registry.uri }}</span> · runs from {{ runs.source }}</p>
</header>
<main>

<section id="champion" data-champion="{{ registry.get('champion', '') }}">
  <h2>Champion</h2>
  {% if registry.note %}
  <p class="note" id="registry-note">{{ registry.note }}</p>
  {% else %}
  <div class="cards">
    <div class="card"><div class="label">champion</div><div class="big">{{ ('v' ~ registry.champion) if registry.champion else 'none' }}</div></div>
    {% for alias, version in registry.aliases|dictsort %}{% if alias != 'champion' %}
    <div class="card"><div class="label">{{ alias }}</div><div class="big">v{{ version }}</div></div>
    {% endif %}{% endfor %}
    <div class="card"><div class="label">registered versions</div><div class="big">{{ registry.versions|length }}</div></div>
  </div>
  <h3>Champion lineage (<code>xib.champion_history</code>)</h3>
  {% if registry.history %}
  <p id="history">{% for v in registry.history %}<span class="alias">v{{ v }}</span>{% if not loop.last %} → {% endif %}{% endfor %}</p>
  {% else %}<p class="note">No champion has been promoted yet.</p>{% endif %}
  <h3>Promotions and rollbacks</h3>
  {% if registry.events %}
  <table id="events">
    <tr><th>when (UTC)</th><th>version</th><th>event</th></tr>
    {% for e in registry.events %}
    <tr class="event" data-version="{{ e.version }}" data-event="{{ e.event }}"><td class="mono">{{ e.time }}</td><td>v{{ e.version }}</td><td>{{ e.event }}</td></tr>
    {% endfor %}
  </table>
  {% else %}<p class="note">No promotion or rollback recorded.</p>{% endif %}
  {% endif %}
</section>


<section id="training">
  <h2>Alignment training</h2>
  {% if training.note %}<p class="note" id="training-note">{{ training.note }}</p>{% endif %}
  {% if training.modalities %}
  <table id="training-table">
    <tr><th>modality</th><th>MLflow run</th><th>status</th><th class="num">steps</th><th class="num">final (or last) train loss</th><th class="num">last val loss</th><th class="num">train points</th><th class="num">val points</th></tr>
    {% for m in training.modalities %}
    <tr class="training-run" data-modality="{{ m.modality }}" data-status="{{ m.status }}">
      <td><b>{{ m.modality }}</b></td>
      <td class="mono">{% if m.link %}<a href="{{ m.link }}">{{ m.run_id[:12] }}</a>{% else %}{{ m.run_id[:12] }}{% endif %}</td>
      <td{% if m.status in ('FAILED', 'KILLED') %} class="failed"{% endif %}>{{ m.status }}</td>
      <td class="num">{{ m.steps }}</td>
      <td class="num final-loss">{{ m.final_loss|num }}</td>
      <td class="num final-val-loss">{{ m.final_val_loss|num }}</td>
      <td class="num">{{ m.curves['train/loss']|length }}</td>
      <td class="num">{{ m.curves['val/loss']|length }}</td>
    </tr>
    {% endfor %}
  </table>
  {% if training_plot %}<h3>Loss against the step</h3>
  <p class="note">Curves with a single point are not drawn: their value is in the table above.</p>
  <div class="plot" id="training-plot">{{ training_plot }}</div>{% endif %}
  {% endif %}
</section>

<section id="evaluation">
  <h2>Last evaluation</h2>
  {% if evaluation.note %}<p class="note" id="evaluation-note">{{ evaluation.note }}</p>{% else %}
  <p>From <span class="mono">{{ evaluation.folder }}</span>.</p>
  <h3>DisCRn by pair and input order</h3>
  {% if evaluation.discrn %}
  {% for g in evaluation.discrn %}
  <table class="discrn" data-pair="{{ g.pair }}">
    <tr><th>{{ g.pair }}</th><th class="num">all orders</th>{% for o in g.orders %}<th class="num">{{ o }}</th>{% endfor %}</tr>
    {% for r in g.rows %}
    <tr class="discrn-row" data-scoring="{{ r.scoring }}">
      <td>{{ r.scoring }}</td>
      {% for col in ['all'] + g.orders %}{% set c = r.cells.get(col) %}
      <td class="num{{ ' below' if c and c.below else '' }}" data-metric="{{ c.metric if c else '' }}">{% if c %}{{ c.value|num }}{% if c.floor is not none %} <span class="floor">(floor {{ c.floor|num }})</span>{% endif %}{% else %}—{% endif %}</td>
      {% endfor %}
    </tr>
    {% endfor %}
    <tr><td class="floor">answered / chance</td><td class="num floor" colspan="{{ 1 + g.orders|length }}">{{ g.answered|num or '—' }} / {{ g.chance|num or '—' }}</td></tr>
  </table>
  {% endfor %}
  {% else %}<p class="note">The evaluation has no DisCRn metric.</p>{% endif %}
  <h3>All metrics</h3>
  <table id="eval-metrics">
    <tr><th>metric</th><th class="num">value</th><th class="num floor">gate floor</th></tr>
    {% for name, m in evaluation.metrics|dictsort %}
    <tr class="eval-metric" data-metric="{{ name }}"><td><code>{{ name }}</code></td><td class="num{{ ' below' if m.floor is not none and m.value < m.floor else '' }}">{{ m.value|num }}</td><td class="num floor">{{ m.floor|num }}</td></tr>
    {% endfor %}
  </table>
  {% if evaluation.plots %}<h3>Plots</h3>
  <div class="evalplots">{% for p in evaluation.plots %}<img class="eval-plot" alt="{{ p.name }}" title="{{ p.name }}" src="{{ p.src }}">{% endfor %}</div>{% endif %}
  {% endif %}
</section>

{% if not registry.note %}
<section id="versions">
  <h2>Registered versions and the gate's verdicts</h2>
  {% if registry.versions %}
  <table>
    <tr><th>version</th><th>registered (UTC)</th><th>aliases</th><th>gate</th><th>judged against</th><th>reasons</th></tr>
    {% for v in registry.versions|reverse %}
    <tr class="version" data-version="{{ v.version }}" data-decision="{{ v.decision or 'undecided' }}">
      <td><b>{% if v.link %}<a href="{{ v.link }}">v{{ v.version }}</a>{% else %}v{{ v.version }}{% endif %}</b>
        {% if v.run_link %}<div class="mono"><a class="run-link" href="{{ v.run_link }}">run {{ v.run_id[:8] }}</a></div>{% elif v.run_id %}<div class="mono">run {{ v.run_id[:8] }}</div>{% endif %}</td>
      <td class="mono">{{ v.created }}</td>
      <td>{% for a in v.aliases %}<span class="alias">{{ a }}</span>{% endfor %}
        {% if v.rolled_back_at %}<div class="note rolled-back">rolled back {{ v.rolled_back_at }}</div>{% endif %}</td>
      <td><span class="badge {{ v.decision or 'undecided' }}">{{ v.decision or 'not judged' }}</span></td>
      <td>{{ ('v' ~ v.judged_against) if v.judged_against else ('no champion' if v.decision else '') }}</td>
      <td>
        {% if v.checks %}
        <ul class="checks">
          {% for c in v.checks %}
          <li class="check {{ 'failed' if c.failed else 'passed' }}" data-rule="{{ c.rule }}" data-metric="{{ c.metric }}">[{{ c.rule }}] {{ c.reason }}</li>
          {% endfor %}
        </ul>
        {% elif v.summary %}{{ v.summary }}{% else %}<span class="note">no gate verdict recorded</span>{% endif %}
      </td>
    </tr>
    {% endfor %}
  </table>
  {% else %}<p class="note">The registered model has no versions.</p>{% endif %}
</section>

<section id="metrics">
  <h2>Metrics against the gate</h2>
  <p>Floors: {% if registry.floors %}{% for m, f in registry.floors|dictsort %}<code>{{ m }}</code> ≥ {{ f|num }}{% if not loop.last %}, {% endif %}{% endfor %}{% else %}<span class="note">none configured (gate.floors)</span>{% endif %}.
  Against the champion: a drop of at most {{ registry.policy.tolerance|num }}{% for p, t in registry.policy.tolerances|dictsort %}, {{ t|num }} on <code>{{ p }}</code>{% endfor %};
  no drop at all on {% for m in registry.policy.no_drop %}<code>{{ m }}</code>{% if not loop.last %}, {% endif %}{% endfor %}.</p>
  {% if registry.metric_names %}
  <table id="metric-table">
    <tr><th>metric</th><th class="num">floor</th>{% for v in registry.versions %}<th class="num">v{{ v.version }}</th>{% endfor %}</tr>
    {% for m in registry.metric_names %}
    <tr class="metric" data-metric="{{ m }}">
      <td><code>{{ m }}</code></td>
      <td class="num">{{ registry.floors[m]|num if m in registry.floors else '' }}</td>
      {% for v in registry.versions %}
      <td class="num{{ ' below' if m in v.below_floor else '' }}">{{ v.metrics[m]|num if m in v.metrics else '—' }}</td>
      {% endfor %}
    </tr>
    {% endfor %}
  </table>
  {% if plot %}<h3>Gated metrics over versions</h3>
  <p class="note">Green: passed the gate; red: refused; ringed: was champion; dashed: the floor.</p>
  <div class="plot">{{ plot }}</div>{% endif %}
  {% else %}<p class="note">No version has logged metrics.</p>{% endif %}
</section>
{% endif %}

<section id="runs">
  <h2>Recent pipeline runs</h2>
  <p>From {{ runs.source }}.{% if runs.scheduled %} {{ runs.scheduled }} scheduled run(s) waiting.{% endif %}</p>
  {% if runs.note %}<p class="note" id="runs-note">{{ runs.note }}</p>{% endif %}
  {% if runs.runs %}
  <table>
    <tr><th>flow</th><th>run</th><th>deployment</th><th>state</th><th>started (UTC)</th><th class="num">duration</th></tr>
    {% for r in runs.runs %}
    <tr class="run{{ ' failed-run' if r.cause else '' }}" data-flow="{{ r.flow }}" data-state="{{ r.state_type }}">
      <td><b>{{ r.flow }}</b>{% if r.cause %}<div class="cause">{{ r.cause }}</div>{% endif %}
        {% if r.stages %}<div class="stages">{% for t in r.stages %}<span class="stage" data-stage="{{ t.name }}" data-state="{{ t.state_type }}" style="color: {{ t.colour }}">{{ t.name }} {{ t.duration_s|seconds }}</span>{% endfor %}</div>{% endif %}</td>
      <td class="mono">{{ r.name }}</td><td>{{ r.deployment }}</td>
      <td><span class="badge" style="background: {{ r.colour }}">{{ r.state_name or r.state_type }}</span></td>
      <td class="mono">{{ r.start }}</td><td class="num">{{ r.duration_s|seconds }}</td>
    </tr>
    {% endfor %}
  </table>
  {% endif %}
</section>

<section id="data">
  <h2>Data set versions</h2>
  {% if data.lock %}
  <h3>DVC outputs (<span class="mono">{{ data.lock_file }}</span>)</h3>
  <table>
    <tr><th>stage</th><th>output</th><th>md5</th><th class="num">size</th><th class="num">files</th></tr>
    {% for o in data.lock %}
    <tr class="dvc-out" data-stage="{{ o.stage }}"><td>{{ o.stage }}</td><td class="mono">{{ o.path }}</td><td class="mono">{{ o.md5 }}</td><td class="num">{{ '{:,}'.format(o.size) }}</td><td class="num">{{ o.files }}</td></tr>
    {% endfor %}
  </table>
  {% else %}<p class="note">No dvc.lock: the pipeline has not been run by `dvc repro` here.</p>{% endif %}
  <h3>Stages completed by the Prefect flows / <code>xib repro</code></h3>
  {% if data.records %}
  <table>
    <tr><th>stage</th><th>finished (UTC)</th><th>key (command, inputs, parameters)</th></tr>
    {% for r in data.records %}<tr class="stage-record" data-stage="{{ r.stage }}"><td>{{ r.stage }}</td><td class="mono">{{ r.done }}</td><td class="mono">{{ r.key[:16] }}</td></tr>{% endfor %}
  </table>
  {% else %}<p class="note">No stage records under .cache/stages.</p>{% endif %}
  <h3>Rows per split</h3>
  {% if data.rows %}
  <table id="rows">
    <tr><th>data</th><th>modality / pair</th><th>split</th><th class="num">rows</th></tr>
    {% for r in data.rows %}<tr class="split-rows" data-kind="{{ r.kind }}" data-group="{{ r.group }}" data-split="{{ r.split }}"><td>{{ r.kind }}</td><td>{{ r.group }}</td><td>{{ r.split }}</td><td class="num">{{ '{:,}'.format(r.rows) if r.rows is not none else 'unreadable' }}</td></tr>{% endfor %}
  </table>
  {% else %}<p class="note">No data under the data folder yet.</p>{% endif %}
  <h3>World manifests</h3>
  {% if data.manifests %}
  <p>Combined: <code id="world-hash">{{ data.world_hash[:16] }}</code></p>
  <table>
    <tr><th>modality</th><th>split</th><th>sha256</th><th class="num">bytes</th></tr>
    {% for m in data.manifests %}<tr class="manifest"><td>{{ m.modality }}</td><td>{{ m.split }}</td><td class="mono">{{ m.sha256[:16] }}</td><td class="num">{{ '{:,}'.format(m.bytes) }}</td></tr>{% endfor %}
  </table>
  {% else %}<p class="note">No world manifests under the data folder yet.</p>{% endif %}
</section>

</main>
</body>
</html>
"""
