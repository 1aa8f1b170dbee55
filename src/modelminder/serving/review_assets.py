"""The reviewer UI's page templates (Jinja, autoescaped) and their filters, stylesheet and
script.

Served by :mod:`modelminder.serving.review_ui` from the app itself: the pages load nothing
from elsewhere, so they work offline, and the content security policy can forbid inline
script and style. Every value reaches the page through a template variable, which Jinja
escapes.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import jinja2

from modelminder.review.case import LabelSeen

_BASE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }} - modelminder review</title>
<link rel="stylesheet" href="{{ root }}/assets/review.css">
<script src="{{ root }}/assets/review.js" defer></script>
</head>
<body>
<header>
<strong>modelminder review</strong>
{% if who %}
<nav>
<a href="{{ root }}/">Queue</a>
<a href="{{ root }}/overview">Overview</a>
<span class="who">{{ who }}</span>
<form method="post" action="{{ root }}/logout" class="inline">
<input type="hidden" name="csrf" value="{{ csrf }}">
<button type="submit">Log out</button>
</form>
</nav>
{% endif %}
</header>
<main>
{% block main %}{% endblock %}
</main>
</body>
</html>
"""

_LOGIN = """{% extends "base" %}
{% block main %}
<h1>Log in</h1>
{% if message %}<p class="error" role="alert">{{ message }}</p>{% endif %}
<form method="post" action="{{ root }}/login" class="login">
<input type="hidden" name="csrf" value="{{ login_csrf }}">
<label>Reviewer token
<input type="password" name="token" autocomplete="current-password" required autofocus>
</label>
<button type="submit">Log in</button>
</form>
<p class="hint">A <code>reviewer</code> (or <code>admin</code>) token:
<code>minder tokens create --role reviewer</code>. It is kept in a cookie that only these
pages receive; logging out forgets it.</p>
{% endblock %}
"""

_NEXT = """<form method="post" action="{{ root }}/next" class="inline" id="next-form">
<input type="hidden" name="csrf" value="{{ csrf }}">
<button type="submit" id="next">Next item <kbd>n</kbd></button>
</form>"""

_QUEUE = (
    """{% extends "base" %}
{% macro choice(name, title, values, chosen) %}
<label>{{ title }} <select name="{{ name }}">
{% for v in values %}
<option value="{{ v }}"{% if v == chosen %} selected{% endif %}>{{ v or "any" }}</option>
{% endfor %}
</select></label>
{% endmacro %}
{% block main %}
<h1>Review queue</h1>
{% if notice %}<p class="notice" role="status">{{ notice }}</p>{% endif %}
<p>Reviewed today: <strong>{{ reviewed }}</strong> of {{ budget }}.</p>
"""
    + _NEXT
    + """
<form method="get" action="{{ root }}/" class="filters">
{{ choice("reason", "Reason", [""] + reasons, reason) }}
{{ choice("status", "Status", [""] + statuses, status) }}
{{ choice("sort", "Sort by", sorts, sort) }}
<button type="submit">Show</button>
</form>
<table class="queue">
<thead><tr><th>Item</th><th>Status</th><th>Reasons</th><th>Score</th><th>Decision</th>
<th>Priority</th><th>Propensity</th><th>Age</th><th>Reviewer</th></tr></thead>
<tbody>
{% for i in items %}
<tr class="{{ i.status }}">
<td><a href="{{ root }}/items/{{ i.item_id }}">{{ i.item_id }}</a></td>
<td>{{ i.status }}{% if i.verdict %} ({{ i.verdict }}){% endif %}</td>
<td>{{ i.reasons | join(", ") }}</td>
<td class="num">{{ i.score | num }}</td>
<td>{{ i.decision }}</td>
<td class="num">{{ i.priority | num }}</td>
<td class="num">{{ i.propensity | num }}</td>
<td class="num">{{ (now - i.created_at) | age }}</td>
<td>{% if i.reviewer == me %}you{% else %}{{ i.reviewer or "" }}{% endif %}</td>
</tr>
{% else %}
<tr><td colspan="9">No item matches.</td></tr>
{% endfor %}
</tbody>
</table>
{% if more %}<p class="hint">Showing the first {{ items | length }} items.</p>{% endif %}
<p class="hint">Keys: <kbd>n</kbd> next item.</p>
{% endblock %}
"""
)

_ITEM = (
    """{% extends "base" %}
{% block main %}
<h1>Item {{ item.item_id }} <small>event {{ item.event_id }}</small></h1>
{% if notice %}<p class="notice" role="status">{{ notice }}</p>{% endif %}
<section class="state">
<p>Queued {{ item.created_at | when }} because <strong>{{ item.reasons | join(", ") }}</strong>,
with probability {{ item.propensity | num }} (priority {{ item.priority | num }}).</p>
<p class="status {{ item.status }}">{{ lease }}</p>
{% if mine %}
<form method="post" action="{{ root }}/items/{{ item.item_id }}/label" id="label-form">
<input type="hidden" name="csrf" value="{{ csrf }}">
<label>Note <textarea name="note" maxlength="1000" rows="2"></textarea></label>
<div class="verdicts">
<button type="submit" name="verdict" value="fraud" class="fraud">Fraud <kbd>f</kbd></button>
<button type="submit" name="verdict" value="legit" class="legit">Legit <kbd>l</kbd></button>
<button type="submit" name="verdict" value="unsure">Unsure <kbd>u</kbd></button>
</div>
</form>
<form method="post" action="{{ root }}/items/{{ item.item_id }}/skip" id="skip-form" class="inline">
<input type="hidden" name="csrf" value="{{ csrf }}">
<label>Skip because <input type="text" name="reason" maxlength="1000" required></label>
<button type="submit">Skip <kbd>s</kbd></button>
</form>
{% elif item.status == "open" %}
<form method="post" action="{{ root }}/items/{{ item.item_id }}/claim" class="inline">
<input type="hidden" name="csrf" value="{{ csrf }}">
<button type="submit" id="claim">Claim <kbd>c</kbd></button>
</form>
{% endif %}
"""
    + _NEXT
    + """
<p class="hint">Keys: <kbd>f</kbd> fraud, <kbd>l</kbd> legit, <kbd>u</kbd> unsure,
<kbd>s</kbd> skip, <kbd>c</kbd> claim, <kbd>n</kbd> next item.</p>
</section>

<section>
<h2>Event</h2>
{% if event %}
<table class="fields">
{% for name, value in event %}<tr><th>{{ name }}</th><td>{{ value }}</td></tr>{% endfor %}
</table>
{% else %}<p>The event is not in the log.</p>{% endif %}
{% if own_labels %}
<p>Labels: {{ own_labels | map("label") | join("; ") }}</p>
{% endif %}
</section>

<section>
<h2>As served</h2>
{% for p in served %}
<p><strong>{{ p.role }}</strong> {{ p.model_version }}: score {{ p.score | num }},
decision <strong>{{ p.decision }}</strong>, served {{ p.served_at | when }}.</p>
{% else %}<p>No prediction was recorded for this event.</p>{% endfor %}
{% if reasons %}
<h3>Top reasons</h3>
<table class="reasons"><thead><tr><th>Feature</th><th>Value</th><th>Contribution</th></tr></thead>
<tbody>
{% for r in reasons %}
<tr><td>{{ r.feature }}</td><td class="num">{{ r.value | num }}</td>
{#- #}<td class="num">{{ r.contribution | num }}</td></tr>
{% endfor %}
</tbody>
</table>
{% endif %}
{% if features %}
<h3>Features</h3>
<table class="features">
<thead><tr><th>Feature</th>
{% for role in feature_roles %}<th>{{ role }}</th>{% endfor %}</tr></thead>
<tbody>
{% for name, values in features %}
<tr><td>{{ name }}</td>{% for v in values %}<td class="num">{{ v | num }}</td>{% endfor %}</tr>
{% endfor %}
</tbody>
</table>
{% endif %}
</section>

<section>
<h2>History of {{ entity }}</h2>
{% if history %}
<form method="post" action="{{ root }}/items/{{ item.item_id }}/case" id="case">
<input type="hidden" name="csrf" value="{{ csrf }}">
<table class="history">
<thead><tr><th>Pick</th><th>Time</th><th>Event</th>
{% for f in history_fields %}<th>{{ f }}</th>{% endfor %}
<th>Score</th><th>Decision</th><th>Labels</th></tr></thead>
<tbody>
{% for h in history %}
<tr><td><input type="checkbox" name="event:{{ h.event_id }}" value="1"
{#- #} aria-label="pick {{ h.event_id }}"></td>
<td>{{ h.ts | when }}</td><td>{{ h.event_id }}</td>
{% for f in history_fields %}<td>{{ h.fields[f] }}</td>{% endfor %}
<td class="num">{% if h.served %}{{ h.served.score | num }}{% endif %}</td>
<td>{% if h.served %}{{ h.served.decision }}{% endif %}</td>
<td>{{ h.labels | map("label") | join("; ") }}</td></tr>
{% endfor %}
</tbody>
</table>
<p>Label the picked events in one go (each gets its own label):
<button name="verdict" value="fraud">Fraud</button>
<button name="verdict" value="legit">Legit</button>
<input name="note" maxlength="1000" placeholder="note (optional)"></p>
</form>
{% else %}<p>No other events of {{ entity }} around this one.</p>{% endif %}
</section>
{% endblock %}
"""
)

_OVERVIEW = """{% extends "base" %}
{% block main %}
<h1>Overview</h1>
<table class="fields">
<tr><th>Reviewed today</th><td>{{ stats.reviewed_today }} of {{ stats.daily_budget }}</td></tr>
<tr><th>Items</th><td>{{ stats["items"] }}</td></tr>
<tr><th>Median turnaround</th><td>{{ turnaround }}</td></tr>
<tr><th>Reviewer agreement</th><td>{{ agreement }}</td></tr>
</table>
{% for title, counts in tables %}
<h2>{{ title }}</h2>
<table class="counts">
{% for k, v in counts.items() %}<tr><th>{{ k }}</th><td class="num">{{ v }}</td></tr>{% endfor %}
</table>
{% endfor %}
{% endblock %}
"""

_ERROR = """{% extends "base" %}
{% block main %}
<h1>{{ title }}</h1>
<p class="error" role="alert">{{ message }}</p>
<p>Nothing was changed. <a href="{{ root }}/">Back to the queue</a></p>
{% endblock %}
"""

TEMPLATES = {
    "base": _BASE,
    "login": _LOGIN,
    "queue": _QUEUE,
    "item": _ITEM,
    "overview": _OVERVIEW,
    "error": _ERROR,
}

CSS = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 0; color: #1d232a; background: #f7f7f5; }
header { display: flex; gap: 1.5em; align-items: center; padding: .6em 1.2em;
  background: #1d3557; color: #fff; }
header a, header .who { color: #fff; margin-right: 1em; }
nav { display: flex; align-items: center; }
main { padding: 1em 1.2em 3em; max-width: 78em; }
table { border-collapse: collapse; margin: .5em 0 1em; background: #fff; }
th, td { padding: .25em .6em; border-bottom: 1px solid #ddd; text-align: left;
  vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
form.inline { display: inline-block; margin: .3em .6em .3em 0; }
.filters { margin: .8em 0; }
.filters label { margin-right: 1em; }
.verdicts button { font-size: 1.1em; margin: .4em .4em .4em 0; padding: .3em 1em; }
button.fraud { background: #c8372d; color: #fff; border: 0; }
button.legit { background: #2a7f3f; color: #fff; border: 0; }
textarea { display: block; width: 30em; max-width: 100%; }
kbd { border: 1px solid #999; border-radius: 3px; padding: 0 .3em; font-size: .85em;
  background: #eee; color: #222; }
.error { color: #a4161a; font-weight: 600; }
.notice { background: #fff3cd; padding: .4em .7em; }
.hint { color: #555; }
tr.closed, tr.expired { color: #777; }
.status.leased { font-weight: 600; }
small { color: #666; font-weight: normal; }
"""

JS = """"use strict";
// Keyboard shortcuts of the review pages: each presses a button of the page (so a shortcut
// does exactly what a click does, with the form's CSRF token). Keys typed into a field are
// left alone.
(function () {
  var busy = false;
  var VERDICTS = { f: "fraud", l: "legit", u: "unsure" };

  function press(selector) {
    var button = document.querySelector(selector);
    if (!button || busy) { return false; }
    busy = true;  // one submission per page: a second key press would race the first
    button.click();
    return true;
  }

  function skip() {
    var form = document.getElementById("skip-form");
    if (!form || busy) { return false; }
    var why = window.prompt("Why skip this item?");
    if (why === null || why.trim() === "") { return true; }
    form.elements.namedItem("reason").value = why.trim();
    busy = true;
    form.submit();
    return true;
  }

  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey || e.repeat) { return; }
    var t = e.target;
    if (t && (t.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].indexOf(t.tagName) >= 0)) {
      return;
    }
    var key = e.key.toLowerCase();
    var done = false;
    if (VERDICTS.hasOwnProperty(key)) {
      done = press('#label-form button[name="verdict"][value="' + VERDICTS[key] + '"]');
    } else if (key === "n") {
      done = press("#next");
    } else if (key === "c") {
      done = press("#claim");
    } else if (key === "s") {
      done = skip();
    }
    if (done) { e.preventDefault(); }
  });
})();
"""


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


# -- the templates' filters ---------------------------------------------------------------
def environment(label: str) -> jinja2.Environment:
    """The page templates, autoescaped, with their filters; ``label`` is the project's label
    column (``[events].label``)."""
    env = jinja2.Environment(
        loader=jinja2.DictLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(num=_num, when=when, age=age, label=lambda x: _label(x, label))
    return env


def _num(value: Any) -> str:
    """A served or stored number for reading: missing, infinities and large values said."""
    if value is None:
        return "missing"
    if isinstance(value, str):  # a stored infinity ("Infinity" / "-Infinity")
        return "-∞" if value.startswith("-") else "∞"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if math.isnan(value):
        return "missing"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return f"{value:,.0f}" if abs(value) >= 10_000 else f"{value:.4g}"


def when(us: int) -> str:
    """A time in UTC microseconds, for reading.

    Examples
    --------
    >>> when(1_780_000_000_000_000)
    '2026-05-28 20:26:40 UTC'
    """
    t = _EPOCH + dt.timedelta(microseconds=int(us))
    return t.strftime("%Y-%m-%d %H:%M:%S UTC")


def age(us: int) -> str:
    """A duration in microseconds, in words (negative: ``0s``).

    Examples
    --------
    >>> [age(s * 1_000_000) for s in (45, 750, 11_100, 360_000)]
    ['45s', '12m', '3h 5m', '4d 4h']
    """
    s = max(0, int(us) // 1_000_000)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86_400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86_400}d {s % 86_400 // 3600}h"


def _label(found: LabelSeen, name: str) -> str:
    return f"{name}={found.value:g} from {found.source}, {when(found.label_ts)}"
