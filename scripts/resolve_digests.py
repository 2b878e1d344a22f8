"""Ask the registries which digest each platform image's tag names today.

    python scripts/resolve_digests.py                 # compare with images.yaml; exit 1 on a difference
    python scripts/resolve_digests.py --write         # record the registries' digests in images.yaml
    python scripts/resolve_digests.py --only traefik --only busybox
    python scripts/resolve_digests.py --endpoint docker.io=https://mirror.example.com

For every entry of ``scw_platform/data/images.yaml`` that has a tag, the script asks the registry
for the tag's manifest over the OCI distribution API (``HEAD /v2/<repository>/manifests/<tag>``,
``GET`` when the registry sends no ``Docker-Content-Digest``), accepting the OCI image index and
the Docker manifest list first: their digest is the multi-architecture one a cluster with mixed
nodes needs. Anonymous pulls on Docker Hub, ghcr.io and quay.io first answer 401 with a
``WWW-Authenticate: Bearer realm=...,service=...,scope=...`` challenge; the script fetches a token
from the realm (no credentials) and retries, as the distribution spec's token flow describes.

It prints one line per entry: ``ok``, ``DIFFERENT`` (recorded vs registry), ``NEW`` (a gap the
registry fills) or ``ERROR``. Exit 0 when every recorded digest matches, 1 when one differs or a
gap can be filled (without ``--write``), 2 when a registry could not answer. ``--write`` replaces
each differing or missing digest in place (comments are kept), with ``source`` naming the
manifest URL and ``checked`` today's date, then validates the file again before saving.

Uses only the standard library (``urllib``): requests/httpx are not among the pinned dev
requirements.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402 - after the path set-up, for a plain script run

from scw_platform import images  # noqa: E402

#: Index types first: a tag that names an index must resolve to the index, not one of its manifests
#: (OCI image-spec media types; Docker's manifest list and v2 schema 2 for older pushes).
ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
#: Docker Hub serves the distribution API on its own host, not on docker.io.
API_HOSTS = {"docker.io": "https://registry-1.docker.io"}
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


class RegistryError(Exception):
    """A registry answered with something other than a manifest."""


@dataclass(frozen=True)
class Result:
    name: str
    recorded: str | None
    found: str | None
    url: str
    error: str | None = None

    @property
    def status(self) -> str:
        if self.error is not None:
            return "ERROR"
        if self.recorded is None:
            return "NEW"
        return "ok" if self.recorded == self.found else "DIFFERENT"


def manifest_url(registry: str, repository: str, tag: str, endpoints: Mapping[str, str]) -> str:
    base = endpoints.get(registry) or API_HOSTS.get(registry) or f"https://{registry}"
    return f"{base.rstrip('/')}/v2/{repository}/manifests/{urllib.parse.quote(tag, safe='')}"


def _bearer_token(challenge: str, timeout: float) -> str:
    scheme, _, params = challenge.partition(" ")
    if scheme.lower() != "bearer":
        raise RegistryError(
            f"authentication {scheme!r} requested; only anonymous bearer tokens are supported"
        )
    fields = dict(_CHALLENGE_PARAM.findall(params))
    realm = fields.pop("realm", None)
    if not realm:
        raise RegistryError(f"bearer challenge without a realm: {challenge!r}")
    query = urllib.parse.urlencode({k: v for k, v in fields.items() if k in ("service", "scope")})
    with urllib.request.urlopen(f"{realm}?{query}" if query else realm, timeout=timeout) as response:
        body = json.load(response)
    token = body.get("token") or body.get("access_token")
    if not isinstance(token, str) or not token:
        raise RegistryError(f"the token endpoint {realm} returned no token")
    return token


def _request(url: str, method: str, token: str | None, timeout: float) -> tuple[dict[str, str], bytes]:
    headers = {"Accept": ACCEPT}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return {k.lower(): v for k, v in response.headers.items()}, response.read()


def resolve(url: str, timeout: float = 20.0) -> str:
    """The digest the registry names for ``url`` (a manifests URL)."""
    token: str | None = None
    for attempt in range(2):
        try:
            headers, _ = _request(url, "HEAD", token, timeout)
            digest = headers.get("docker-content-digest")
            if digest is None:
                # Optional on HEAD for some registries: the digest is the sha256 of the exact bytes.
                _, body = _request(url, "GET", token, timeout)
                digest = "sha256:" + hashlib.sha256(body).hexdigest()
            return images.check_digest(digest, "Docker-Content-Digest")
        except urllib.error.HTTPError as exc:
            challenge = exc.headers.get("WWW-Authenticate") if exc.headers else None
            if exc.code == 401 and attempt == 0 and challenge:
                token = _bearer_token(challenge, timeout)
                continue
            raise RegistryError(f"HTTP {exc.code} from {url}") from exc
        except ValueError as exc:
            raise RegistryError(str(exc)) from exc
    raise RegistryError(f"{url}: still unauthorised with an anonymous token")


def check(
    catalogue: images.Images,
    *,
    only: Sequence[str] = (),
    endpoints: Mapping[str, str] | None = None,
    timeout: float = 20.0,
) -> list[Result]:
    results = []
    for entry in catalogue:
        if (only and entry.name not in only) or entry.tag is None:
            continue
        url = manifest_url(entry.registry, entry.repository, entry.tag, endpoints or {})
        try:
            found = resolve(url, timeout)
        except (RegistryError, OSError) as exc:
            results.append(Result(entry.name, entry.digest, None, url, error=str(exc)))
            continue
        results.append(Result(entry.name, entry.digest, found, url))
    return results


# --------------------------------------------------------------------------------------------
# Writing: a line-level edit of the entry's block, so the file's comments survive.
# --------------------------------------------------------------------------------------------

_ENTRY = re.compile(r"^  (?P<name>[a-z0-9-]+):\s*$")
_KEY = re.compile(r"^    (?P<key>[A-Za-z]+):")


def _replace_entry(lines: list[str], result: Result, today: date) -> list[str]:
    start = next(
        (i for i, line in enumerate(lines) if (m := _ENTRY.match(line)) and m["name"] == result.name), None
    )
    if start is None:
        raise KeyError(f"entry {result.name!r} not found")
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i].strip() and not lines[i].startswith("    ")),
        len(lines),
    )
    kept: list[str] = []
    dropping = False
    for line in lines[start + 1 : end]:
        key = _KEY.match(line)
        if key:
            dropping = key["key"] in ("digest", "source", "checked", "gap")
        if not dropping:
            kept.append(line)
    tag_at = next(i for i, line in enumerate(kept) if line.startswith("    tag:"))
    added = [
        f"    digest: {result.found}\n",
        f"    source: {result.url} (scripts/resolve_digests.py)\n",
        f"    checked: {today.isoformat()}\n",
    ]
    return lines[: start + 1] + kept[: tag_at + 1] + added + kept[tag_at + 1 :] + lines[end:]


def write(path: Path, results: Sequence[Result], today: date) -> int:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    changed = [r for r in results if r.status in ("DIFFERENT", "NEW")]
    for result in changed:
        lines = _replace_entry(lines, result, today)
    if changed:
        lines = [re.sub(r"^checked: .*$", f"checked: {today.isoformat()}", line) for line in lines]
    text = "".join(lines)
    images.parse(yaml.safe_load(text))  # never save a file the library would refuse
    path.write_text(text, encoding="utf-8")
    return len(changed)


def _endpoint(value: str) -> tuple[str, str]:
    registry, sep, base = value.partition("=")
    if not sep or not registry or not base.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"--endpoint {value!r}: expected REGISTRY=http(s)://HOST[:PORT]")
    return registry, base


def main(argv: Sequence[str] | None = None, *, today: date | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--file", type=Path, default=images.DEFAULT_PATH, help="the image list (default: the library's)"
    )
    parser.add_argument("--write", action="store_true", help="record the registries' digests in the file")
    parser.add_argument("--only", action="append", default=[], metavar="NAME", help="check only this entry")
    parser.add_argument(
        "--endpoint",
        action="append",
        default=[],
        type=_endpoint,
        metavar="REGISTRY=URL",
        help="where to reach a registry's API (a mirror, a test server)",
    )
    parser.add_argument("--timeout", type=float, default=20.0)
    args = parser.parse_args(argv)

    catalogue = images.load(args.file)
    unknown = [name for name in args.only if name not in catalogue.names()]
    if unknown:
        parser.error(f"--only: no such image {', '.join(unknown)} (known: {', '.join(catalogue.names())})")
    results = check(catalogue, only=args.only, endpoints=dict(args.endpoint), timeout=args.timeout)
    for r in results:
        detail = (
            r.error if r.error else (r.found if r.status != "DIFFERENT" else f"{r.recorded} -> {r.found}")
        )
        print(f"{r.status:9} {r.name}: {detail}")
    skipped = [e.name for e in catalogue if e.tag is None and (not args.only or e.name in args.only)]
    if skipped:
        print(f"skipped (no tag recorded): {', '.join(skipped)}")
    if any(r.error for r in results):
        return 2
    if args.write:
        count = write(args.file, results, today or date.today())
        print(f"{args.file}: {count} digest(s) written")
        return 0
    return 1 if any(r.status in ("DIFFERENT", "NEW") for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
