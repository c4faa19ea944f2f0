"""Micro-benchmark of the `--rewrite-urls` rewriters (issue 22): throughput and memory of the
pure streaming functions, with no proxy or network around them.

    python bench/rewriter.py            # a 50 MiB generated page, fed in 64 KiB chunks
    python bench/rewriter.py --mib 200 --chunk 4096

Three pages: "dense" (every element carries root-absolute URLs: srcset, inline styles, a script
and a stylesheet per row), "table" (a data table with one root-absolute link per 140-byte row)
and "plain table" (the same with relative links). Each is generated chunk by chunk, so the peak
RSS printed is the rewriter's (plus the interpreter), not the page's.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jhsingle_native_proxy.proxy.url_rewriter import css_rewriter, html_rewriter  # noqa: E402

#: A page where every element carries URLs: the rewriter's worst realistic case.
_DENSE_ROW = b"""<div class="row" id="r{n}">
  <a href="/static/page{n}.html" class="link">Page {n}</a> and <a href="relative/{n}">one</a>
  <img src="/static/img/{n}.png" alt="picture {n}" width="120" height="80" loading="lazy">
  <img srcset="/static/a{n}.png 1x, /static/b{n}.png 2x" alt="">
  <span class="label" data-id="{n}">Some text a page would hold, &amp; entities &lt;b&gt;.</span>
  <p>Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut
  labore et dolore magna aliqua. <b>Ut enim</b> ad <i>minim</i> veniam, <em>quis</em> nostrud.</p>
  <div style="background: url(/static/bg{n}.png) no-repeat">styled</div>
  <!-- a comment with <a href="/not/this"> inside -->
  <ul><li><a href="https://example.org/{n}">external</a></li><li><a href="#top">top</a></li></ul>
  <script>var row{n} = {"url": "/api/row/{n}", "html": "<a href='/x'>"};</script>
  <style>.r{n} { background: url("/static/r{n}.svg"); } /* url(/c) */</style>
</div>
"""
#: A large data table (what a 50 MiB page usually is), with a root-absolute link on every row.
_TABLE_ROW = (
    b'<tr class="r"><td>{n}</td><td><a href="/item/{n}">item {n}</a></td>'
    b'<td>some text here &amp; more</td><td><span title="x">3.14</span></td></tr>\n'
)
#: The same table with relative links: nothing to rewrite, the fast path all along.
_PLAIN_ROW = _TABLE_ROW.replace(b"/item/", b"item/")
PAGES = {"dense": _DENSE_ROW, "table": _TABLE_ROW, "plain table": _PLAIN_ROW}


def _page_chunks(row_template: bytes, total: int, chunk: int):
    """About `total` bytes of HTML, in pieces of `chunk` bytes cut anywhere."""
    pending = b"<!doctype html><html><head><title>bench</title></head><body><table>\n"
    made = row = 0
    while made < total:
        while len(pending) < chunk:
            pending += row_template.replace(b"{n}", str(row).encode())
            row += 1
        yield pending[:chunk]
        made += chunk
        pending = pending[chunk:]


def _run(name: str, rewriter, chunks) -> None:
    """Feeds the chunks; the times are of the rewriter's calls only, not of making the page."""
    fed = out = most_held = 0
    wall = cpu = 0.0
    clock, cpu_clock = time.perf_counter, time.process_time
    for piece in chunks:
        fed += len(piece)
        started, cpu_started = clock(), cpu_clock()
        out += len(rewriter.feed(piece))
        wall += clock() - started
        cpu += cpu_clock() - cpu_started
        most_held = max(most_held, rewriter.held)
    started, cpu_started = clock(), cpu_clock()
    out += len(rewriter.end())
    wall += clock() - started
    cpu += cpu_clock() - cpu_started
    mib = fed / (1 << 20)
    print(
        f"{name}: {mib:.0f} MiB, {wall:.2f} s wall, {cpu:.2f} s CPU: {mib / cpu:.0f} MiB/s of CPU; "
        f"{out - fed:+d} bytes; most held {most_held} bytes"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=50)
    parser.add_argument("--chunk", type=int, default=64 * 1024)
    args = parser.parse_args()
    total = args.mib << 20
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    insert = b"<script src=/user/alice/_jhsnp/r.js></script>"
    for name, row in PAGES.items():
        chunks = _page_chunks(row, total, args.chunk)
        _run(f"html, {name} page", html_rewriter("/user/alice/", insert), chunks)
    css_piece = b".a { b: url(/static/a.png) } /* url(/x) */ .b { content: 'url(/y)' }\n" * 1000
    pieces = (css_piece for _ in range(total // len(css_piece)))
    _run("css, a url() every 80 bytes", css_rewriter("/user/alice/"), pieces)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"peak RSS: {after / 1024:.1f} MiB (at start {before / 1024:.1f} MiB)")


if __name__ == "__main__":
    main()
