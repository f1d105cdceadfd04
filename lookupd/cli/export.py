"""``lookupd export``: the data as a MaxMind DB file, a policy as Envoy configuration."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from lookupd.cli.arguments import whole_number
from lookupd.cli.build import add_format_option, formats_for
from lookupd.errors import LookupdError
from lookupd.version import __version__

# The client, what geoip found, and the RBAC rule that denied (its lookupd reason).
_ACCESS_LOG = (
    "%START_TIME% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% country=%REQ(X-GEO-COUNTRY)% "
    "region=%REQ(X-GEO-REGION)% %REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE% "
    "%RESPONSE_CODE_DETAILS%\n"
)


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``export`` command (``mmdb`` and ``envoy``) to the subparsers ``commands``."""
    export = commands.add_parser(
        "export",
        help="write the data as a MaxMind DB file, or a policy as Envoy configuration",
        description="Hand lookupd's data and policies to Envoy's own geoip and RBAC filters.",
    )
    kinds = export.add_subparsers(required=True, metavar="KIND")

    mmdb = kinds.add_parser(
        "mmdb",
        help="write the data as a MaxMind DB file (GeoIP2 Country, or City with subdivisions)",
        description=(
            "Write what lookupd answers for every address as a MaxMind DB file that Envoy's "
            "geoip filter (or any MaxMind reader) reads: the embedded data without SOURCE, "
            "else a snapshot or source files merged in precedence as `lookupd build` does. "
            "Records carry country.iso_code, and subdivisions[0].iso_code for data with "
            "subdivisions; reserved and unknown addresses have no record. The build epoch "
            "is the data's own date. The file is written beside FILE and renamed over it."
        ),
    )
    mmdb.add_argument("sources", nargs="*", metavar="SOURCE", help="data (default: embedded)")
    mmdb.add_argument("-o", "--output", required=True, metavar="FILE", help=".mmdb to write")
    add_format_option(mmdb)
    mmdb.add_argument(
        "--database-type",
        metavar="TYPE",
        help="metadata database_type (default GeoIP2-City with subdivisions, else GeoIP2-Country)",
    )
    mmdb.add_argument("-q", "--quiet", action="store_true", help="no summary")
    mmdb.set_defaults(run=run_mmdb)

    envoy = kinds.add_parser(
        "envoy",
        help="render a policy as Envoy geoip + RBAC filters over an exported MaxMind DB file",
        description=(
            "Render POLICY as Envoy HTTP filters that decide as CheckRegion decides: strip "
            "the client's geo headers, look the client up in the MaxMind DB file that "
            "`lookupd export mmdb` wrote (--mmdb, as Envoy sees it), and deny with RBAC in "
            "lookupd's order (network overrides, reserved, unknown, subdivision exceptions, "
            "countries). Prints a YAML list to put in an HTTP connection manager's "
            "http_filters before the router, or with --bootstrap a whole Envoy config."
        ),
    )
    envoy.add_argument("policy", metavar="POLICY", help="the policy's name")
    envoy.add_argument(
        "--policies", metavar="FILE", help="policy file (default: the example policies)"
    )
    envoy.add_argument(
        "--mmdb", required=True, metavar="PATH", help="the exported .mmdb, as Envoy sees it"
    )
    envoy.add_argument(
        "--trusted-hops",
        type=whole_number,
        default=0,
        metavar="N",
        help="proxies in front of Envoy that append to x-forwarded-for (default 0: the "
        "client connects to Envoy); the connection manager must say the same",
    )
    envoy.add_argument("-o", "--output", metavar="FILE", help="write here, not to stdout")
    whole = envoy.add_argument_group("a whole Envoy config (--bootstrap)")
    whole.add_argument("--bootstrap", action="store_true", help="a runnable Envoy config")
    whole.add_argument("--listen", default="0.0.0.0:8000", metavar="HOST:PORT")
    whole.add_argument("--admin", default="127.0.0.1:9901", metavar="HOST:PORT")
    whole.add_argument(
        "--upstream",
        metavar="HOST:PORT",
        help="the API behind Envoy (default: answer 200 from Envoy itself, for trials)",
    )
    envoy.set_defaults(run=run_envoy)


def run_mmdb(args: argparse.Namespace) -> int:
    """Open or merge the data, export it and summarise."""
    from lookupd.datafiles.mmdb_export import export_mmdb
    from lookupd.datafiles.open import open_database, open_sources

    formats = formats_for(args.format, len(args.sources))
    started = time.perf_counter()
    if not args.sources:
        db = open_database()
    elif len(args.sources) == 1 and args.format is None:
        db = open_database(args.sources[0])
    else:
        db = open_sources(args.sources, formats=formats)
    written = export_mmdb(args.output, db, database_type=args.database_type)
    if args.quiet:
        return 0
    when = time.strftime("%Y-%m-%d", time.gmtime(written.build_epoch))
    print(f"wrote {written.path} ({written.file_size:,} bytes, {written.database_type})")
    print(f"data version id: {written.data_version}")
    print(f"build epoch: {written.build_epoch} ({when}, from {written.build_epoch_from})")
    print(f"networks: {written.networks:,}, records: {written.records}")
    if written.shadowed:
        print(
            f"warning: {written.shadowed} IPv6 ranges inside ::/96 were not written (MaxMind "
            "files keep IPv4 there)",
            file=sys.stderr,
        )
    print(f"time: {time.perf_counter() - started:.1f} s")
    return 0


def run_envoy(args: argparse.Namespace) -> int:
    """Render the policy's filters (or a whole config) as YAML with a header comment."""
    import yaml

    from lookupd.policies.envoy import EnvoyOptions, http_filters
    from lookupd.policies.loading import example_policies_path, load_policies

    path = args.policies or str(example_policies_path())
    shown = args.policies or "lookupd's example policies"
    policy_set = load_policies(path)
    policy = policy_set.policies.get(args.policy)
    if policy is None:
        known = ", ".join(policy_set.policies)
        msg = f"{path}: no policy named {args.policy!r} (the file has {known})"
        raise LookupdError(msg)
    options = EnvoyOptions(args.mmdb, trusted_hops=args.trusted_hops)
    filters = http_filters(policy, options)
    header = [
        f"lookupd policy {policy.name!r} as Envoy filters, rendered by lookupd {__version__}",
        f"from {shown}, policy file version (SHA-256) {policy_set.version}.",
        f"Geo data: {args.mmdb}, written by `lookupd export mmdb` from the data the",
        "lookupd servers load; Envoy reloads it when a new file is renamed over that path.",
        "The RBAC policies are named after the lookupd reason each stands for; a denied",
        "request's %RESPONSE_CODE_DETAILS% names it. The client address is the one the",
        "HTTP connection manager decides: it must have use_remote_address: true and",
        f"xff_num_trusted_hops: {args.trusted_hops}, as the geoip filter here has.",
    ]
    document: Any = filters
    if args.bootstrap:
        document = _bootstrap(filters, args)
    else:
        header += ["Put this list in the connection manager's http_filters, before the router."]
    text = "".join(f"# {line}\n" for line in header)
    text += yaml.dump(document, Dumper=_plain_dumper(), sort_keys=False, width=100)
    if args.output:
        from lookupd.datafiles.atomic import replace_atomically

        def fill(tmp: Path) -> None:
            tmp.write_text(text)

        replace_atomically(Path(args.output), fill)
    else:
        sys.stdout.write(text)
    return 0


def _bootstrap(filters: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """A whole Envoy config: admin, one listener with the filters, the upstream cluster."""
    listen_host, listen_port = _host_port(args.listen)
    admin_host, admin_port = _host_port(args.admin)
    route: dict[str, Any] = {"match": {"prefix": "/"}}
    clusters = []
    if args.upstream:
        host, port = _host_port(args.upstream)
        route["route"] = {"cluster": "api"}
        endpoint = {"address": {"socket_address": {"address": host, "port_value": port}}}
        clusters.append(
            {
                "name": "api",
                "type": "STRICT_DNS",
                "connect_timeout": "1s",
                "load_assignment": {
                    "cluster_name": "api",
                    "endpoints": [{"lb_endpoints": [{"endpoint": endpoint}]}],
                },
            }
        )
    else:
        route["direct_response"] = {"status": 200, "body": {"inline_string": "allowed\n"}}
    router = {
        "name": "envoy.filters.http.router",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
        },
    }
    manager = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
        "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress",
        "access_log": [
            {
                "name": "envoy.access_loggers.stdout",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3"
                    ".StdoutAccessLog",
                    "log_format": {"text_format_source": {"inline_string": _ACCESS_LOG}},
                },
            }
        ],
        "use_remote_address": True,
        "xff_num_trusted_hops": args.trusted_hops,
        "route_config": {"virtual_hosts": [{"name": "api", "domains": ["*"], "routes": [route]}]},
        "http_filters": [*filters, router],
    }
    return {
        "admin": {"address": {"socket_address": {"address": admin_host, "port_value": admin_port}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "ingress",
                    "address": {
                        "socket_address": {"address": listen_host, "port_value": listen_port}
                    },
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": manager,
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": clusters,
        },
    }


def _plain_dumper() -> type[Any]:
    import yaml

    class PlainDumper(yaml.SafeDumper):
        """Writes a repeated object out again rather than as an anchor and alias."""

        def ignore_aliases(self, data: Any) -> bool:
            return True

    return PlainDumper


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        msg = f"{text!r}: expected HOST:PORT"
        raise LookupdError(msg)
    return host.strip("[]"), int(port)
