"""The platform's image list (scw_platform/data/images.yaml): what the committed file records, and
that a bad entry or a bad digest override is refused naming the entry and key."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from scw_platform import images

DIGEST = "sha256:" + "ab" * 32
COMMITTED = yaml.safe_load(images.DEFAULT_PATH.read_text(encoding="utf-8"))
_REF = re.compile(r"^[a-z0-9.-]+(:\d+)?(/[a-z0-9._-]+)+:[A-Za-z0-9_][A-Za-z0-9._-]*(@sha256:[0-9a-f]{64})?$")


def document(**entries: dict[str, Any]) -> dict[str, Any]:
    return {"checked": "2026-12-01", "images": entries}


def entry(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "registry": "docker.io",
        "repository": "library/busybox",
        "tag": "1.37.0",
        "digest": DIGEST,
        "source": "find_string id 1",
        "component": "scw_platform/apps.py",
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def problems(doc: object) -> list[str]:
    with pytest.raises(images.ImagesError) as caught:
        images.parse(doc)
    return caught.value.problems


# --------------------------------------------------------------------------------------------
# The committed list
# --------------------------------------------------------------------------------------------


def test_the_committed_list_loads_and_every_reference_is_well_formed() -> None:
    catalogue = images.load()
    assert len(catalogue) == len(COMMITTED["images"])
    for image in catalogue:
        if image.tag is not None:
            assert _REF.fullmatch(image.ref), image.ref
            assert image.ref.startswith(f"{image.registry}/{image.repository}:{image.tag}")
        # Every digest says where it was read and when; every gap says why.
        assert (image.digest is not None and image.source and image.checked) or image.gap


def test_the_hook_and_job_images_are_pinned_with_their_tags() -> None:
    assert images.ref("busybox") == (
        "docker.io/library/busybox:1.37.0@sha256:bdf57e528e45e4433820e045b29b4597825a1c9e38353532d90a01445013f82e"
    )
    assert images.ref("postgres").startswith("docker.io/library/postgres:16.9@sha256:")
    assert images.ref("alpine").startswith("docker.io/library/alpine:3.22@sha256:")
    assert (
        images.digest("mimirtool") is None and images.ref("mimirtool") == "docker.io/grafana/mimirtool:3.0.1"
    )


def test_the_tags_are_the_ones_the_modules_pin() -> None:
    """One list of versions: the modules' own constants and the file agree."""
    from scw_platform import gitops, ingress, observability, secrets, tls

    assert images.tag("traefik") == ingress.TRAEFIK_IMAGE_TAG
    for component in ("controller", "webhook", "cainjector", "startupapicheck", "acmesolver"):
        assert images.tag(f"cert-manager-{component}") == tls.CERT_MANAGER_IMAGE_TAG
    assert images.tag("scaleway-certmanager-webhook") == tls.SCW_WEBHOOK_IMAGE_TAG
    assert images.tag("external-secrets") == secrets.EXTERNAL_SECRETS_IMAGE_TAG
    assert images.tag("blackbox-exporter") == observability.BLACKBOX_IMAGE_TAG
    assert images.tag("pushgateway") == observability.PUSHGATEWAY_IMAGE_TAG
    assert images.tag("alloy") == observability.ALLOY_IMAGE_TAG
    assert images.tag("prometheus-config-reloader") == observability.CONFIG_RELOADER_IMAGE_TAG
    assert images.tag("node-exporter") == observability.NODE_EXPORTER_IMAGE_TAG
    assert images.tag("kube-state-metrics") == observability.KUBE_STATE_METRICS_IMAGE_TAG
    assert images.tag("argocd") == gitops.ARGOCD_IMAGE_TAG
    assert images.tag("argocd-image-updater") == gitops.IMAGE_UPDATER_IMAGE_TAG


def test_chart_entries_name_the_pinned_chart_versions() -> None:
    from scw_platform import gitops, ingress, observability, secrets, tls

    pinned = {
        "traefik": ingress.TRAEFIK_CHART_VERSION,
        "cert-manager": tls.CERT_MANAGER_CHART_VERSION,
        "scaleway-certmanager-webhook": tls.SCW_WEBHOOK_CHART_VERSION,
        "external-secrets": secrets.EXTERNAL_SECRETS_CHART_VERSION,
        "k8s-monitoring": observability.AGENT_CHART_VERSION,
        "prometheus-blackbox-exporter": observability.BLACKBOX_CHART_VERSION,
        "prometheus-pushgateway": observability.PUSHGATEWAY_CHART_VERSION,
        "argo-cd": gitops.ARGOCD_CHART_VERSION,
        "argocd-image-updater": gitops.IMAGE_UPDATER_CHART_VERSION,
    }
    for image in images.load():
        if image.chart is not None and image.chart.name in pinned:
            assert image.chart.version == pinned[image.chart.name], image.name


def test_chart_values_carry_the_tag_and_the_digest_in_the_form_the_chart_takes() -> None:
    webhook = images.get("cert-manager-webhook")
    assert images.chart_values("cert-manager-webhook") == {"webhook.image.digest": webhook.digest}
    traefik = images.get("traefik")
    assert images.chart_values("traefik") == {"image.tag": f"v3.7.11@{traefik.digest}"}
    blackbox = images.get("blackbox-exporter")
    assert images.chart_values("blackbox-exporter") == {"image.digest": blackbox.digest}
    pushgateway = images.get("pushgateway")
    assert images.chart_values("pushgateway") == {"image.tag": f"v1.11.3@{pushgateway.digest}"}
    assert images.chart_values("alloy-operator") == {}  # a gap pins nothing
    assert images.chart_values("busybox") == {}  # not a chart image
    assert set(images.chart_values("external-secrets")) == {
        "image.tag",
        "webhook.image.tag",
        "certController.image.tag",
    }


def test_each_form_gets_its_own_value() -> None:
    chart = {
        "name": "c",
        "version": "1.0.0",
        "values": [
            {"path": "a.tag", "form": "tag-suffix"},
            {"path": "b.digest", "form": "digest-appended"},
            {"path": "c.sha", "form": "hex-appended"},
            {"path": "d.image", "form": "none"},
        ],
    }
    catalogue = images.parse(document(x=entry(chart=chart)))
    assert catalogue.chart_values("x") == {
        "a.tag": f"1.37.0@{DIGEST}",
        "b.digest": DIGEST,
        "c.sha": DIGEST.removeprefix("sha256:"),
    }


def test_chart_overrides_nest_every_recorded_digest_of_a_chart() -> None:
    overrides = images.chart_overrides("cert-manager")
    assert overrides == {
        "image": {"digest": images.digest("cert-manager-controller")},
        "webhook": {"image": {"digest": images.digest("cert-manager-webhook")}},
        "cainjector": {"image": {"digest": images.digest("cert-manager-cainjector")}},
        "startupapicheck": {"image": {"digest": images.digest("cert-manager-startupapicheck")}},
        "acmesolver": {"image": {"digest": images.digest("cert-manager-acmesolver")}},
    }
    # Every k8s-monitoring image but the operator's (a gap, left out) is recorded.
    reloader = f"v0.91.0@{images.digest('prometheus-config-reloader')}"
    alloy = {"image": {"digest": images.digest("alloy")}, "configReloader": {"image": {"tag": reloader}}}
    assert images.chart_overrides("k8s-monitoring") == {
        "alloy-metrics": alloy,
        "alloy-singleton": alloy,
        "alloy-logs": alloy,
        "clusterMetrics": {
            "node-exporter": {"image": {"digest": images.digest("node-exporter")}},
            "kube-state-metrics": {"image": {"tag": f"v2.18.0@{images.digest('kube-state-metrics')}"}},
        },
    }
    assert images.chart_overrides("no-such-chart") == {}


def test_unknown_names_list_the_known_ones() -> None:
    with pytest.raises(KeyError, match=r"no image 'busybux' .*known: .*busybox"):
        images.ref("busybux")


# --------------------------------------------------------------------------------------------
# Bad entries
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "digest",
    [
        "sha256:" + "a" * 63,
        "sha256:" + "A" * 64,
        "sha512:" + "a" * 64,
        "a" * 64,
        "sha256:" + "g" * 64,
        "sha256:" + "a" * 65,
        42,
    ],
)
def test_a_digest_that_is_not_sha256_and_64_hex_is_refused_naming_the_entry(digest: object) -> None:
    found = problems(document(busybox=entry(digest=digest)))
    assert len(found) == 1
    assert found[0].startswith("images.busybox.digest: ")
    assert "is not a digest: sha256: followed by 64 lowercase hex digits" in found[0]


def test_every_problem_is_reported_at_once() -> None:
    found = problems(
        document(
            busybox=entry(digest="sha256:nope"),
            postgres=entry(repository="library/postgres", tag="latest"),
            alpine=entry(repository="library/alpine", digest=None),
            traefik=entry(repository="traefik", source=None),
            typo=entry(repository="x", regsitry="docker.io"),
        )
    )
    assert found == [
        "images.busybox.digest: 'sha256:nope' is not a digest: sha256: followed by 64 lowercase hex digits",
        "images.postgres: tag: 'latest' names no release; pin a version",
        "images.alpine: gap: an entry without a digest (or tag) must say why none is recorded and what was "
        "searched",
        "images.traefik: source and checked: a digest needs where it was read and the date",
        "images.typo: unknown key 'regsitry'",
    ]


def test_a_tagless_digest_and_a_needless_gap_are_refused() -> None:
    found = problems(document(a=entry(tag=None), b=entry(gap="nothing found")))
    assert found[0].startswith("images.a: tag: a digest without its tag")
    assert found[1] == "images.b: gap: given although the entry has its tag and digest"


def test_bad_references_and_chart_paths_name_their_key() -> None:
    found = problems(
        document(
            a=entry(registry="https://docker.io"),
            b=entry(repository="Library/Busybox"),
            c=entry(
                chart={
                    "name": "x",
                    "version": "1.0.0",
                    "values": [{"path": "image..tag", "form": "tag-suffix"}],
                }
            ),
            d=entry(
                chart={"name": "x", "version": "1.0.0", "values": [{"path": "image.tag", "form": "sideways"}]}
            ),
            e=entry(chart={"name": "x", "version": "1.0.0", "values": []}),
        )
    )
    assert [p.split(":")[0] for p in found] == [
        "images.a.registry",
        "images.b.repository",
        "images.c.chart.values.0.path",
        "images.d.chart.values.0.form",
        "images.e.chart",
    ]
    assert found[4] == (
        "images.e.chart: values: list at least one values path (form none when the chart takes no digest)"
    )


def test_two_entries_for_one_chart_values_path_are_refused() -> None:
    chart = {"name": "traefik", "version": "41.3.0", "values": [{"path": "image.tag", "form": "tag-suffix"}]}
    found = problems(document(a=entry(chart=chart), b=entry(chart=chart)))
    assert found == ["images.b.chart.values: image.tag of chart traefik is also listed by 'a'"]


def test_a_date_after_the_lists_date_and_a_bad_document_are_refused() -> None:
    assert problems(document(a=entry(checked="2026-12-02"))) == [
        "images.a: checked 2026-12-02 is after the list's checked date 2026-12-01"
    ]
    assert problems([]) == ["the document must be a mapping with 'checked' and 'images'"]
    assert problems({"checked": "yesterday", "images": {}, "extra": 1}) == [
        "unknown top-level key 'extra'",
        "checked: must be the ISO date (YYYY-MM-DD) the list was compiled",
        "images: must be a non-empty map of image name to entry",
    ]


def test_an_unreadable_file_is_one_problem(tmp_path: Path) -> None:
    path = tmp_path / "images.yaml"
    path.write_text("images: [unclosed\n", encoding="utf-8")
    with pytest.raises(images.ImagesError, match="cannot be read as YAML"):
        images.load(path)


def test_the_committed_file_round_trips_through_parse() -> None:
    mutated = copy.deepcopy(COMMITTED)
    assert len(images.parse(mutated)) == len(COMMITTED["images"])


# --------------------------------------------------------------------------------------------
# Gaps: admitted by the production rule only as recorded
# --------------------------------------------------------------------------------------------


def test_a_gap_is_found_by_its_exact_recorded_reference_only() -> None:
    (mimirtool,) = [g for g in images.load().gaps() if g.name == "mimirtool"]
    assert mimirtool.gap and mimirtool.tag == "3.0.1"
    assert images.gap_for("docker.io/grafana/mimirtool:3.0.1") is mimirtool
    # Another tag of the same image, or a pinned image without its digest, is no gap.
    assert images.gap_for("docker.io/grafana/mimirtool:3.0.2") is None
    assert images.gap_for(images.ref("busybox").split("@")[0]) is None


def test_production_runs_exactly_the_recorded_gaps(committed_plans: dict[str, Any]) -> None:
    """Every pod-spec image of prod without a digest is a recorded gap; a new one fails here (and
    in the policy rule), and so does a gap closed in images.yaml but not in this list."""
    undigested = set()
    for registration in committed_plans["prod"].registrations:
        for container in _pod_containers(registration.inputs):
            image = container.get("image")
            if isinstance(image, str) and "@sha256:" not in image:
                undigested.add(image)
    assert undigested == {"docker.io/grafana/mimirtool:3.0.1"}
    assert all(images.gap_for(image) for image in undigested)


def _pod_containers(inputs: Any) -> list[dict[str, Any]]:
    spec = _dig(inputs, "spec")
    for path in ("template.spec", "jobTemplate.spec.template.spec"):
        pod = _dig(spec, path)
        if isinstance(pod, dict):
            return [*pod.get("initContainers", []), *pod.get("containers", [])]
    return []


def test_check_digest_names_its_key() -> None:
    assert images.check_digest(DIGEST, "x") == DIGEST
    with pytest.raises(ValueError, match=r"^gateImage: 'sha256:' is not a digest"):
        images.check_digest("sha256:", "gateImage")


# --------------------------------------------------------------------------------------------
# The production rule reads the same file
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "chart",
    [
        "cert-manager",
        "traefik",
        "external-secrets",
        "prometheus-blackbox-exporter",
        "prometheus-pushgateway",
    ],
)
def test_the_recorded_digests_satisfy_the_production_rule(chart: str) -> None:
    """A chart without gaps, given chart_overrides, passes platform-images-by-digest-production;
    without them it fails naming each values path."""
    from policy import rules

    rule = rules.RULES_BY_NAME["platform-images-by-digest-production"]

    def release(values: dict[str, Any]) -> rules.StackView:
        inputs = {"chart": chart, "version": "1.0.0", "values": values}
        view = rules.ResourceView(
            urn=f"urn:x::{chart}", type="kubernetes:helm.sh/v3:Release", name=chart, inputs=inputs
        )
        return rules.StackView(resources=(view,), role="production")

    assert rule.evaluate(release(images.chart_overrides(chart))) == []
    expected = sorted(f"values.{vp.path}" for image in images.for_chart(chart) for vp in image.chart.values)  # type: ignore[union-attr]
    assert sorted(v.path for v in rule.evaluate(release({}))) == expected


# --------------------------------------------------------------------------------------------
# pin_chart: the recorded digests merged into a release's values
# --------------------------------------------------------------------------------------------

_TWO_FORMS = {
    "name": "c",
    "version": "1.0.0",
    "values": [
        {"path": "image.tag", "form": "tag-suffix"},
        {"path": "helper.image.digest", "form": "digest-appended"},
        {"path": "sidecar.image.digest", "form": "digest-appended"},
    ],
}


def test_pin_chart_merges_the_digests_and_leaves_the_input_alone() -> None:
    catalogue = images.parse(document(x=entry(chart=_TWO_FORMS)))
    values = {
        "image": {"tag": "1.37.0", "pullPolicy": "IfNotPresent"},
        "helper": {"image": {"tag": "1.37.0"}},
    }
    pinned = catalogue.pin_chart("c", values)
    assert pinned == {
        "image": {"tag": f"1.37.0@{DIGEST}", "pullPolicy": "IfNotPresent"},
        "helper": {"image": {"tag": "1.37.0", "digest": DIGEST}},
        # "sidecar" is not in the values: the release does not run it, so nothing is added.
    }
    assert values == {
        "image": {"tag": "1.37.0", "pullPolicy": "IfNotPresent"},
        "helper": {"image": {"tag": "1.37.0"}},
    }
    # Pinning twice changes nothing (the tag-suffix value is already the pinned one).
    assert catalogue.pin_chart("c", pinned) == pinned
    # A chart the list does not know, or another chart's values, come back as they were.
    assert catalogue.pin_chart("other", values) == values


def test_pin_chart_refuses_a_tag_the_digest_was_not_recorded_for_naming_every_path() -> None:
    catalogue = images.parse(document(x=entry(chart=_TWO_FORMS)))
    values = {"image": {"tag": "1.36.1"}, "helper": {"image": {"tag": "1.36.1"}}}
    with pytest.raises(images.ImagesError) as caught:
        catalogue.pin_chart("c", values)
    assert caught.value.problems == [
        "chart c: image.tag is '1.36.1' but images.x records the digest of tag '1.37.0' (bump both together)",
        "chart c: helper.image.tag is '1.36.1' but images.x records the digest of tag '1.37.0' (bump both "
        "together)",
    ]


def test_pin_chart_leaves_a_gap_unpinned() -> None:
    gap = entry(digest=None, source=None, gap="not found", chart=_TWO_FORMS)
    catalogue = images.parse(document(x=gap))
    values = {"image": {"tag": "1.37.0"}, "helper": {"image": {"tag": "1.37.0"}}}
    assert catalogue.pin_chart("c", values) == values


# --------------------------------------------------------------------------------------------
# The production plan carries every recorded digest where its chart takes it
# --------------------------------------------------------------------------------------------

HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
#: Charts images.yaml lists that production does not install, and why. A chart entry that is in
#: neither production's plan nor here fails the test: its wiring has to be decided.
NOT_IN_PRODUCTION = {
    "scaleway-certmanager-webhook": "DNS-01 only; prod's certificates use HTTP-01",
    "argo-cd": "tooling (scw_platform/gitops.py)",
    "argocd-image-updater": "tooling (scw_platform/gitops.py)",
    "gitlab-runner": "tooling CI runners (scw_platform/ci.py)",
    "gha-runner-scale-set-controller": "tooling CI runners (scw_platform/ci.py)",
}
#: Values paths production's releases cannot pin yet: the entry's gap in images.yaml says why.
PRODUCTION_GAPS = {("k8s-monitoring", "alloy-operator.image.digest")}


def _dig(values: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(values, dict):
            return None
        values = values.get(key)
    return values


def _runs(image: images.Image, values: dict[str, Any]) -> bool:
    assert image.chart is not None
    for condition in image.chart.enabled_when:
        value = _dig(values, condition.path)
        if (condition.default if value is None else value) != condition.equals:
            return False
    return True


def _release_pins(chart: str, values: dict[str, Any]) -> tuple[int, set[tuple[str, str]]]:
    """How many values paths of one release carry their recorded pin, and which are gaps; an
    assertion error for a path that carries anything else."""
    checked, unpinned = 0, set()
    for image in images.for_chart(chart):
        assert image.chart is not None
        if not _runs(image, values):
            continue
        for vp in image.chart.values:
            wanted = image.value_for(vp)
            if vp.form == "none":
                continue
            if wanted is None:
                unpinned.add((chart, vp.path))
                continue
            assert _dig(values, vp.path) == wanted, (chart, vp.path)
            # The tag stays readable next to (or inside) the digest.
            assert image.tag is not None
            sibling = _dig(values, vp.path.rsplit(".", 1)[0] + ".tag")
            assert str(sibling).startswith(image.tag), (chart, vp.path, sibling)
            checked += 1
    return checked, unpinned


def test_every_production_release_pins_each_recorded_digest_at_its_values_path(
    committed_plans: dict[str, Any],
) -> None:
    releases = [r for r in committed_plans["prod"].registrations if r.type == HELM_RELEASE]
    charts = {release.inputs["chart"] for release in releases}
    for chart in images.load().charts():
        assert chart in charts or chart in NOT_IN_PRODUCTION, (
            f"{chart}: in images.yaml, not in prod nor excused"
        )
    # The other way round: a chart production installs that images.yaml does not list would pass
    # the digest rule with nothing checked.
    assert charts <= set(images.load().charts()), charts - set(images.load().charts())
    checked, unpinned = 0, set()
    for release in releases:
        count, gaps = _release_pins(release.inputs["chart"], release.inputs["values"])
        checked += count
        unpinned |= gaps
    assert unpinned == PRODUCTION_GAPS
    # Traefik 1, cert-manager 5, External Secrets 3, k8s-monitoring 8 (Alloy and its config
    # reloader in three collectors, node-exporter, kube-state-metrics), blackbox 1, Pushgateway 1,
    # Argo Rollouts 1.
    assert checked == 20


def test_a_module_tag_bumped_without_its_entry_fails_the_values_it_builds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from scw_platform import observability, tls

    monkeypatch.setattr(tls, "CERT_MANAGER_IMAGE_TAG", "v1.21.2")
    with pytest.raises(images.ImagesError) as caught:
        tls.cert_manager_values(ha=False)
    # Every cert-manager image block names the bumped tag: all five are reported at once.
    assert len(caught.value.problems) == 5
    assert (
        "webhook.image.tag is 'v1.21.2' but images.cert-manager-webhook records" in caught.value.problems[1]
    )
    monkeypatch.setattr(observability, "NODE_EXPORTER_IMAGE_TAG", "v1.10.3")
    with pytest.raises(images.ImagesError, match=r"clusterMetrics\.node-exporter\.image\.tag is 'v1\.10\.3'"):
        observability.agent_values(
            cluster_name="c", backend="cockpit", metrics_push_url="u", logs_push_url="l"
        )


def test_the_docs_table_lists_every_entry_with_its_digest_or_gap() -> None:
    """docs/charts.md's table is written by hand: it must not drift from images.yaml."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "charts.md").read_text()
    rows = {
        cells[1].strip("` "): cells[3].strip()
        for line in text.splitlines()
        if line.startswith("| `") and len(cells := line.split("|")) > 4
    }
    for entry in images.load():
        assert entry.name in rows, f"{entry.name} is not in docs/charts.md's table"
        shown = rows[entry.name]
        if entry.digest is None:
            assert shown == "**gap**", (entry.name, shown)
        else:
            assert shown.strip("`").rstrip("…") in entry.digest, (entry.name, shown)
