"""HTML reports: what the monitors found, as pages a person reads.

Contract: a report is rendered from results the library already computed (a
:class:`~modelminder.monitoring.monitor.MonitorReport`); this package computes no statistic of
its own, reads no log and changes nothing. A page is one self-contained file: the plotly JS
bundle is embedded from the installed plotly package, and no script, style or font is loaded
from elsewhere, so it opens offline and can be mailed or archived. A page holds aggregates
only (per window, feature, alert), never raw events, event ids or feature vectors. Every text
that comes from data is escaped.
"""
