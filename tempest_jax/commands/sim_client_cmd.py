"""Simulated MAME clients: N games of the embedded simulator playing against a running server.

Each game is one TCP client speaking the wire protocol in lockstep (frame, then wait for the
5-byte reply), exactly as the Lua client does in MAME. Use it to train through the server without
ROMs, or to load-test a server. They play until Ctrl-C (or --ticks, --seconds), then print the
frames they played.

With --cabinet each client is a whole simulated cabinet (attract mode, coin, start, level
select to the server's start settings, initials), played as the Lua client plays MAME.

Examples:
  tempest-jax sim-client --clients 16 --server 127.0.0.1:9999
  tempest-jax sim-client --clients 64 --processes 4 --seconds 600
  tempest-jax sim-client --clients 8 --cabinet
"""

from __future__ import annotations

import argparse
import multiprocessing
import signal
import sys

from tempest_jax.cli import positive, start_level


def server_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host or "127.0.0.1", int(port)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clients", type=positive(), default=4, help="games (TCP clients) in all")
    parser.add_argument("--server", type=server_address, default=("127.0.0.1", 9999),
                        metavar="HOST:PORT", help="server address (default 127.0.0.1:9999)")
    parser.add_argument("--processes", type=positive(), default=1,
                        help="split the clients over this many processes")
    parser.add_argument("--ticks", type=positive(), default=None,
                        help="stop after this many ticks (default: play until Ctrl-C)")
    parser.add_argument("--seconds", type=positive(float), default=None,
                        help="stop after this long (default: play until Ctrl-C)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start-level", type=start_level, default=1,
                        help="1-based level games start on (not with --cabinet)")
    parser.add_argument("--cabinet", action="store_true",
                        help="whole cabinets: the replies' start settings choose the level")


def _play(args: argparse.Namespace, clients: int, seed: int) -> tuple[int, float]:
    from tempest_jax.simclient import run_sim_clients
    run = run_sim_clients(args.server, clients, ticks=args.ticks, seconds=args.seconds,
                          seed=seed, start_level=args.start_level, cabinet=args.cabinet)
    return run.frames, run.seconds


def run(args: argparse.Namespace) -> int:
    if args.processes > args.clients:
        print("sim-client: need --processes <= --clients", file=sys.stderr)
        return 2
    shares = [args.clients // args.processes + (i < args.clients % args.processes)
              for i in range(args.processes)]
    try:
        if args.processes == 1:
            results = [_play(args, shares[0], args.seed)]
        else:
            with multiprocessing.get_context("spawn").Pool(args.processes) as pool:
                # Ctrl-C reaches every process of the terminal's group: the clients' processes
                # end their play and return it, and this one waits for them.
                previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
                try:
                    results = pool.starmap(_play, [(args, n, args.seed + i)
                                                   for i, n in enumerate(shares)])
                finally:
                    signal.signal(signal.SIGINT, previous)
    except (ConnectionError, OSError, TimeoutError) as e:
        print(f"sim-client: {args.server[0]}:{args.server[1]}: {e}", file=sys.stderr)
        return 1
    frames = sum(f for f, _ in results)
    seconds = max(s for _, s in results)
    rate = frames / seconds if seconds else 0.0
    print(f"{args.clients} clients: {frames:,} frames in {seconds:.1f} s ({rate:,.0f} frames/s)")
    return 0
