"""`tootstack mirror`: copy an image (every platform) from one registry to another, e.g. Docker Hub -> ECR."""

from __future__ import annotations

import argparse
import json
import os
import sys

from tootstack.errors import InvalidInput


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "mirror",
        help="copy a (multi-arch) image between registries, tag written last",
        description=(
            "Copy SRC to DEST over the OCI distribution API: every platform manifest, config and layer, each "
            "blob verified by sha256 while it streams; blobs the destination has are skipped; the tag is "
            "written last. When DEST already has SRC's digest, only HEAD requests reach the source. "
            "DEST's tag defaults to SRC's. Credentials may also come from TOOTSTACK_SRC_CREDS / "
            "TOOTSTACK_DEST_CREDS (keeps them out of the process list)."
        ),
        epilog="example: tootstack mirror ghcr.io/mastodon/mastodon:v4.7.4 123456789012.dkr.ecr.eu-west-1.amazonaws.com/mastodon",
    )
    parser.add_argument("source", metavar="SRC", help="e.g. ghcr.io/mastodon/mastodon:v4.7.4 or 127.0.0.1:5101/mastodon/mastodon:v4.5.2")
    parser.add_argument("destination", metavar="DEST", help="e.g. 127.0.0.1:5102/mastodon:v4.5.2")
    parser.add_argument("--plain-http", action="store_true", help="talk HTTP instead of HTTPS (local registries)")
    parser.add_argument("--src-creds", metavar="USER:PASS", help="credentials for the source registry")
    parser.add_argument("--dest-creds", metavar="USER:PASS", help="credentials for the destination registry")
    parser.add_argument("--json", action="store_true", help="print one JSON object with the digest and counts")
    parser.add_argument("--concurrency", type=int, default=4, metavar="N", help="blobs copied at once (default: %(default)s)")
    parser.set_defaults(func=run)


def _creds(value: str | None, env: str, flag: str) -> tuple[str, str] | None:
    value = value if value is not None else os.environ.get(env)
    if value is None:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user:
        raise InvalidInput(f"{flag} expects USER:PASS")
    return user, password


def _keep_freed_memory() -> None:
    """Tune the C allocator of this (command line) process for streaming.

    Copying blobs allocates and frees 64-256 KiB buffers thousands of times a second; with glibc's defaults
    each free hands the memory back to the kernel and the next allocation faults it in again (measured: two
    page faults per 4 KiB streamed, half of the copy's system CPU time). Keeping freed memory in the process
    removes that churn; the peak stays the same, since the copier never holds more than a few buffers at once.
    Done here, in a process the command owns, never by the library (the Lambda runtime is left alone)."""
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt     # glibc (musl has a no-op one)
    except (OSError, AttributeError):
        return                                  # another C library: nothing to tune
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 8 << 20)          # buffers up to 8 MiB from the heap, not a fresh mmap each time
    mallopt(m_trim_threshold, 64 << 20)         # give memory back only when 64 MiB sit free at the top


def _site_packages() -> None:
    """Add site-packages to the path now when the interpreter started without them (`python -S`, as
    bin/tootstack-mirror does): the warm check and the quick copy need only the standard library and
    tootstack, the full copier needs httpx. `site.main()` is the documented way to do it late."""
    if sys.flags.no_site:
        import site

        site.main()


def run(args: argparse.Namespace) -> int:
    from tootstack.mirror.refs import parse_ref

    if args.concurrency < 1 or args.concurrency > 32:
        raise InvalidInput("--concurrency must be between 1 and 32")
    src = parse_ref(args.source)
    dst = parse_ref(args.destination, default_tag=None)
    src_creds = _creds(args.src_creds, "TOOTSTACK_SRC_CREDS", "--src-creds")
    dest_creds = _creds(args.dest_creds, "TOOTSTACK_DEST_CREDS", "--dest-creds")
    result = None
    check = None
    checked: dict[str, int] = {}
    tag = dst.tag or src.tag
    if tag and not dst.digest:
        # The usual scheduled run finds nothing to do: answer that with HEADs over plain sockets and never
        # load httpx (warmcheck.py); a cold destination goes to the quick copy next, and only what that
        # cannot do to the full copier below.
        from tootstack.mirror.warmcheck import warm_check

        check = warm_check(src, dst, tag, src_creds, dest_creds, args.plain_http)
        checked = dict(check.source_requests)
        if check.warm:
            from tootstack.mirror.result import MirrorResult

            result = MirrorResult(str(src), f"{dst.registry}/{dst.repository}:{tag}", check.digest, check.media_type,
                                  warm=True, source_requests=dict(checked))
    progress = (lambda line: print(line, file=sys.stderr, flush=True)) if sys.stderr.isatty() else None
    if result is None and check is not None and check.digest and check.dest_digest is not None:
        # Cold, and the check learned enough: copy over its sockets without loading httpx (quickcopy.py); it
        # stops at anything unexpected and the copier below does the job, skipping what already landed.
        from tootstack.mirror.quickcopy import quick_copy

        _keep_freed_memory()
        result, quick_requests = quick_copy(src, dst, tag, check, src_creds, dest_creds, args.plain_http,
                                            args.concurrency, progress)
        for method, n in quick_requests.items():
            checked[method] = checked.get(method, 0) + n
        if result is not None:
            result.source_requests = dict(checked)
    if check is not None:
        check.close()
    if result is None:
        _site_packages()                    # httpx lives there; a lean start (bin/tootstack-mirror) left it out
        from tootstack.mirror.copier import mirror_image

        _keep_freed_memory()
        result = mirror_image(args.source, args.destination, src_creds=src_creds, dest_creds=dest_creds,
                              plain_http=args.plain_http, concurrency=args.concurrency, progress=progress,
                              checked=check)
        for method, n in checked.items():   # the warm check's (HEAD only) and a stopped quick copy's requests count too
            result.source_requests[method] = result.source_requests.get(method, 0) + n
    if args.json:
        print(json.dumps(result.as_json()))
    elif result.warm:
        print(f"{result.destination} is up to date at {result.digest} (source checked with HEAD only)")
    else:
        print(f"{result.destination} = {result.digest}: {result.blobs_copied} blobs copied "
              f"({result.bytes_copied} bytes), {result.blobs_skipped} already present")
    return 0
