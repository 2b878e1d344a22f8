"""Service level objectives as code: per app, alerts on how fast its error budget burns.

An app that declares ``slo: {availability: 99.9, windowDays: 30}`` promises that 99.9% of what its
users ask for succeeds, measured over a rolling 30 days; the other 0.1% is its error budget. From
that promise :func:`slo_rule_groups` generates one Prometheus rule group (``platform-slo``):
recording rules for the app's error ratio over 5 minutes, 30 minutes, 1 hour and 6 hours from two
sources, and two paging alerts on how fast that ratio spends the budget.

The alerting scheme is the SRE workbook's: chapter 5, "Alerting on SLOs"
(https://sre.google/workbook/alerting-on-slos/), approach 6, multiwindow multi-burn-rate alerts,
and its table of recommended parameters. The burn rate is the error ratio divided by the budget
(1 - SLO): at burn rate 1 the budget lasts exactly the window. Spending a share ``c`` of the budget
within a long window ``L`` of an SLO window ``W`` is a burn rate of ``c * W / L``. The table pages on
2% of the budget within 1 hour (burn rate 14.4 for 30 days) and on 5% within 6 hours (burn rate 6),
each confirmed by a short window of 1/12 the long one (5 and 30 minutes) so the alert resolves soon
after the burn stops instead of for as long as the long window remembers it. The table's third
row, 10% within 3 days, opens a ticket rather than a page and is not generated. Other windows than
30 days keep the meaning (2% of the budget in an hour, 5% in six) and scale the burn rate.

The two sources, each recorded with a ``source`` label, either one alone enough to alert:

* ``traefik``: the share of 5xx responses among the requests Traefik sends to the app's backend.
  Traefik records ``traefik_service_*`` metrics per load-balancer service, with the service's
  provider-qualified name as ``service`` label, inside the handler of each server
  (``pkg/server/service/service.go``, ``getLoadBalancerServiceHandler``); the HTTPRoute rule's
  weighted round robin in front of it carries none. Its kubernetesgateway provider names the
  load-balancer service of a Service ``backendRef`` after the backend's namespace, name and port
  (``pkg/provider/kubernetes/gateway/httproute.go``, ``loadHTTPService``):
  ``Normalize(Normalize(namespace + "-" + name + "-http") + "-" + port)``, where ``Normalize``
  (``pkg/provider/configuration.go``) joins the runs of letters and digits with ``-``, and the
  provider qualifies it with ``@kubernetesgateway``. The app's route sends everything to the
  Service named after the app on its port (``scw_platform.apps.route_spec``), so the app's series
  is exactly ``service="<namespace>-<app>-http-<port>@kubernetesgateway"``. The ``-http`` infix is
  Traefik v3.7's, the pinned line (``scw_platform.ingress.TRAEFIK_IMAGE_TAG``): advisory
  GHSA-6p8f-p8j2-rqmv (affecting v3.7.0 to v3.7.5) shows it as ``default-whoami-http-80``, and
  earlier lines wrote ``<namespace>-<name>-<port>``. A Traefik upgrade must re-check this form.
  The scrape must keep Traefik's own ``service`` label (``honor_labels``, as the Cockpit agent's
  annotation autodiscovery does): one that sets a ``service`` target label of its own moves
  Traefik's to ``exported_service``, and this source then reads nothing.
* ``probe``: the share of failed synthetic probes of ``https://<hostname>/`` (the blackbox
  exporter, every 30 s, ``scw_platform.observability``). Traefik cannot see an app without a ready
  pod: with no server to hand the request to, it answers 503 itself, outside the per-server
  metrics, so a full outage shows up as missing traffic rather than as errors. The probe sees it,
  and every other failure on the way in (DNS, certificate, load balancer).

No traffic never alerts: the Traefik ratio divides by its request rate filtered with ``> 0``, so a
window without requests records no ratio at all instead of ``0 / 0 = NaN``, and a comparison on a
missing series yields nothing. Its 5xx rate falls back to 0 (``or vector(0)``): a healthy app whose
5xx series never existed records 0, not nothing. The probe ratio of a window without samples is
likewise missing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BeforeValidator

from scw_platform.observability import probe_targets
from scw_platform.settings import Settings

#: The rule group the alerts and their recording rules live in (the cluster's metrics data source).
RULE_GROUP = "platform-slo"
RUNBOOK = "docs/runbooks/alerts.md#sloerrorbudgetburn"
#: The recorded error ratios, one per window, labelled ``app``, ``namespace`` and ``source``.
RECORDED_WINDOWS = ("5m", "30m", "1h", "6h")
MAX_WINDOW_DAYS = 90
#: Below a week the slow burn's factor (5% of the budget in 6 hours) drops under 1, and under 3
#: days the fast one's too: the alerts would page while the objective is still being met.
MIN_WINDOW_DAYS = 7
#: What Traefik's service metrics count and how they name the app's backend (module docstring).
TRAEFIK_REQUESTS = "traefik_service_requests_total"
#: Traefik's request latency histogram per service, beside the counter (same ``service`` label):
#: the canary analysis reads its buckets (scw_platform.delivery). Enabled with the service labels
#: in scw_platform.ingress (_traefik_metrics).
TRAEFIK_DURATION_BUCKETS = "traefik_service_request_duration_seconds_bucket"
TRAEFIK_PROVIDER = "kubernetesgateway"
#: The blackbox scrape job (``scw_platform.observability.probe_scrape_config`` and ``probe_spec``).
PROBE_JOB = "blackbox"


def _percentage(value: Any) -> Any:
    # A quoted "99.9" or "99.9%" and YAML's true (an int to Python) are refused, not coerced.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a number of percent like 99.9, without quotes or a % sign (got {value!r})")
    if not 0 < value < 100:
        raise ValueError(
            f"must be strictly between 0 and 100 percent, e.g. 99.9 lets 0.1% fail (got {value!r})"
        )
    return float(value)


def _whole_days(value: Any) -> Any:
    if isinstance(value, str):
        raise ValueError(f"must be a whole number of days like 30, not a duration (got {value!r})")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be a whole number of days like 30 (got {value!r})")
    if value < MIN_WINDOW_DAYS:
        raise ValueError(
            f"must be at least {MIN_WINDOW_DAYS} days (got {value}): over a shorter window the burn-rate "
            "alerts page while the objective is still met"
        )
    if value > MAX_WINDOW_DAYS:
        raise ValueError(f"must be at most {MAX_WINDOW_DAYS} days (got {value})")
    return value


class SloSettings(Settings):
    """An app's service level objective (``platform:apps[].slo``)."""

    availability: Annotated[float, BeforeValidator(_percentage)]
    """Percent of requests and probes that succeed over the window, strictly between 0 and 100
    (e.g. 99.9); the rest is the error budget the alerts watch."""
    window_days: Annotated[int, BeforeValidator(_whole_days)] = 30
    """Days the objective is measured over (1 to 90, whole days). The alerts page on 2% of the
    budget spent within an hour and on 5% within six hours; under 5 days the latter is a pace that
    would still meet the objective (a burn rate under 1), so 28 or 30 is the usual choice."""


@dataclass(frozen=True, kw_only=True)
class SloTarget:
    """One app's objective and what selects its two sources."""

    app: str
    #: The app's namespace, where its HTTPRoute and its Service (named after the app) live.
    namespace: str
    #: The public hostname the probe checks (``https://<hostname>/``).
    hostname: str
    #: The Service port the route's backendRef names (the app's ``port``).
    port: int
    slo: SloSettings
    #: The app delivers by canary (scw_platform.delivery): its route sends traffic to two Services,
    #: ``<app>-stable`` and ``<app>-canary``, instead of ``<app>``, and the objective counts both
    #: (users get errors from either).
    canary: bool = False

    def __post_init__(self) -> None:
        # The names go into PromQL string literals: nothing that could need quoting.
        for what, name in (("app", self.app), ("namespace", self.namespace)):
            if not re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", name):
                raise ValueError(f"{what} {name!r} is not a DNS label")
        if not re.fullmatch(r"[a-z0-9.-]+", self.hostname):
            raise ValueError(f"hostname {self.hostname!r} is not a hostname")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is not a TCP port")


@dataclass(frozen=True, kw_only=True)
class BurnRateAlert:
    """One row of the workbook's table: a share of the budget spent within a long window."""

    name: str
    #: Share of the error budget spent within the long window that pages.
    budget_share: Decimal
    #: The long window in PromQL, whole hours (``1h``, ``6h``).
    long_window: str
    long_text: str
    #: The long window in a sentence ("spent within an hour").
    within: str
    short_window: str
    short_text: str
    #: How long both windows must stay above the threshold (the Prometheus ``for``).
    hold: str
    pace: str

    def factor(self, window_days: int) -> Decimal:
        """The burn rate that spends :attr:`budget_share` of a ``window_days`` budget in the long window."""
        return self.budget_share * window_days * 24 / self.long_hours

    @property
    def long_hours(self) -> int:
        return int(self.long_window.removesuffix("h"))


# Both page (severity critical): a burning budget means users are getting errors now, and only
# someone acting on the app (roll back, scale, fix) stops it. The workbook's approach 6 has no
# ``for``: its short window already makes the alert resolve soon after the burn stops. The holds
# are a small guard on top: 2 minutes for the fast pair (one odd evaluation, such as one across a
# counter reset, does not page) and half the short window for the slow pair, whose 6 hours react
# slowly anyway. Neither hides a burn that matters: 2 minutes of total failure is 4.6% of a 30-day
# 99.9% budget, more than the 2% within an hour that pages.
FAST_BURN = BurnRateAlert(
    name="SLOErrorBudgetFastBurn",
    budget_share=Decimal("0.02"),
    long_window="1h",
    long_text="hour",
    within="an hour",
    short_window="5m",
    short_text="5 minutes",
    hold="2m",
    pace="fast",
)
SLOW_BURN = BurnRateAlert(
    name="SLOErrorBudgetSlowBurn",
    budget_share=Decimal("0.05"),
    long_window="6h",
    long_text="6 hours",
    within="6 hours",
    short_window="30m",
    short_text="30 minutes",
    hold="15m",
    pace="steadily",
)


def traefik_service(target: SloTarget) -> str:
    """The ``service`` label of the app's backend in Traefik's service metrics (module docstring)."""
    return traefik_backend(target.namespace, target.app, target.port)


def traefik_backend(namespace: str, service: str, port: int) -> str:
    """The ``service`` label Traefik gives the backendRef ``service:port`` of a route in
    ``namespace`` (module docstring): what the SLO rules and the canary analysis both select."""
    name = _normalize(_normalize(f"{namespace}-{service}-http") + f"-{port}")
    return f"{name}@{TRAEFIK_PROVIDER}"


def traefik_services(target: SloTarget) -> tuple[str, ...]:
    """Every backend the app's route sends to: the app's Service, or its stable and canary ones."""
    if not target.canary:
        return (traefik_service(target),)
    return tuple(
        traefik_backend(target.namespace, f"{target.app}-{track}", target.port)
        for track in ("stable", "canary")
    )


def _service_matcher(services: Sequence[str]) -> str:
    if not services:
        raise ValueError("no Traefik service to select")
    if len(services) == 1:
        return f'service="{services[0]}"'
    # The names are Traefik's normalized ones (letters, digits, '-', '@'): nothing to escape.
    return f'service=~"{"|".join(services)}"'


def traefik_error_ratio(services: Sequence[str], window: str) -> str:
    """The share of 5xx among the requests Traefik sent to ``services`` over ``window``: the SLO's
    recorded ratio and the canary analysis's success condition are both this expression (one
    source of truth). No request in the window: no sample (module docstring)."""
    matcher = _service_matcher(services)
    requests = f"{TRAEFIK_REQUESTS}{{{matcher}}}"
    errors = f'{TRAEFIK_REQUESTS}{{{matcher}, code=~"5.."}}'
    return f"(sum(rate({errors}[{window}])) or vector(0))\n/\n(sum(rate({requests}[{window}])) > 0)\n"


def traefik_latency_quantile(services: Sequence[str], quantile: float, window: str) -> str:
    """The ``quantile`` of Traefik's request durations to ``services`` over ``window``, in seconds,
    interpolated within its histogram buckets. No request in the window: NaN (every bucket's rate
    is 0), or no sample when the series never existed. Zero buckets are kept on purpose: dropping
    them would move the interpolation's lower bound."""
    if not 0 < quantile < 1:
        raise ValueError(f"quantile {quantile} is not strictly between 0 and 1")
    matcher = _service_matcher(services)
    buckets = f"{TRAEFIK_DURATION_BUCKETS}{{{matcher}}}"
    return f"histogram_quantile({quantile:g}, sum by (le) (rate({buckets}[{window}])))\n"


def _normalize(name: str) -> str:
    """Traefik's ``provider.Normalize``: the runs of letters and digits, joined with ``-``."""
    return "-".join(re.findall(r"[^\W_]+", name))


def recorded(window: str) -> str:
    """The name of the recorded error ratio over ``window`` (the workbook's naming, per app)."""
    return f"app:slo_errors_per_request:ratio_rate{window}"


def slo_rule_groups(targets: Sequence[SloTarget]) -> list[dict[str, Any]]:
    """The ``platform-slo`` rule group for the apps with an objective (none without any)."""
    apps = [t.app for t in targets]
    duplicates = sorted({a for a in apps if apps.count(a) > 1})
    if duplicates:
        raise ValueError(f"more than one objective for app {', '.join(duplicates)}")
    if not targets:
        return []
    rules: list[dict[str, Any]] = []
    for target in targets:
        rules += _recording_rules(target)
        rules += [_alert(target, FAST_BURN), _alert(target, SLOW_BURN)]
    return [{"name": RULE_GROUP, "interval": "1m", "rules": rules}]


def _recording_rules(target: SloTarget) -> list[dict[str, Any]]:
    (instance,) = probe_targets([target.hostname])
    probes = f'probe_success{{job="{PROBE_JOB}", instance="{instance}"}}'
    rules: list[dict[str, Any]] = []
    for window in RECORDED_WINDOWS:
        rules.append(
            {
                "record": recorded(window),
                "expr": traefik_error_ratio(traefik_services(target), window),
                "labels": _labels(target, "traefik"),
            }
        )
        rules.append(
            {
                "record": recorded(window),
                "expr": f"1 - avg(avg_over_time({probes}[{window}]))\n",
                "labels": _labels(target, "probe"),
            }
        )
    return rules


def _labels(target: SloTarget, source: str) -> dict[str, str]:
    return {"app": target.app, "namespace": target.namespace, "source": source}


def _alert(target: SloTarget, alert: BurnRateAlert) -> dict[str, Any]:
    slo = target.slo
    availability = Decimal(str(slo.availability))
    factor = _number(alert.factor(slo.window_days))
    threshold = f"({factor} * {_number((100 - availability) / 100)})"
    selector = f'{{app="{target.app}", namespace="{target.namespace}"}}'
    return {
        "alert": alert.name,
        "expr": (
            f"{recorded(alert.long_window)}{selector} > {threshold}\n"
            f"and\n"
            f"{recorded(alert.short_window)}{selector} > {threshold}\n"
        ),
        "for": alert.hold,
        "labels": {"severity": "critical", "app": target.app, "namespace": target.namespace},
        "annotations": {
            "summary": (
                f"App {target.app} spends its error budget {alert.pace}: over {factor} times the "
                "sustainable rate ({{ $labels.source }})"
            ),
            "description": (
                f"App {target.app} (namespace {target.namespace}) had an error ratio of "
                "{{ $value | humanizePercentage }} over the last "
                f"{alert.long_text} (source {{{{ $labels.source }}}}) and is still above the "
                f"threshold over the last {alert.short_text}: a burn rate over {factor}, i.e. "
                f"{_number(alert.budget_share * 100)}% of the error budget of its "
                f"{_number(availability)}% SLO over {slo.window_days} days spent within "
                f"{alert.within}. At this rate the whole budget is gone within "
                f"{_duration(alert.long_hours / alert.budget_share)}."
            ),
            "runbook": RUNBOOK,
        },
    }


def _duration(hours: Decimal) -> str:
    return f"{_number(hours / 24)} days" if hours % 24 == 0 else f"{_number(hours)} hours"


def _number(value: Decimal) -> str:
    """A decimal without exponent or trailing zeros: 14.4, 6, 0.001."""
    return f"{value.normalize():f}"
