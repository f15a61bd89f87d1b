"""``semid`` console script. ``semid serve --partition '64|v1-k1024'`` serves one trained partition.

The warehouse, artifacts folder and settings come from the same environment variables as the
pipeline (``SEMID_WAREHOUSE``, ``SEMID_ARTIFACTS``, ``SEMID_CONFIG``) or the flags below.
``kill -HUP <pid>`` reloads the partition (like ``POST /reload``), picking up a retrained model.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from .config import artifacts_from_env, load_config, warehouse_from_env


def _serve(args: argparse.Namespace) -> int:
    import torch
    import uvicorn

    from .artifacts import ArtifactLayout
    from .service import create_app
    from .serving import Recommender
    from .serving_load import load_partition

    torch.set_num_threads(max(1, args.threads))
    cfg = load_config()
    layout = ArtifactLayout(root=Path(args.artifacts))

    def loader(key: str, model_dir: str | None = None) -> Recommender:
        bundle = load_partition(warehouse=args.warehouse, layout=layout, cell=key, cfg=cfg, model_dir=model_dir)
        return Recommender(bundle=bundle, max_len=cfg.train.max_len)

    first = loader(args.partition, args.model_dir)
    app = create_app(loader=loader, partition_key=first.partition_key, cfg=cfg.serve, recommender=first)

    def on_hup(signum, frame) -> None:  # reload off the signal handler, in a thread
        def run() -> None:
            rec = loader(app.state.holder.get().partition_key)
            app.state.holder.swap(rec)
            print(f"semid serve: reloaded {rec.partition_key} from {rec.bundle.model_dir}", flush=True)
        threading.Thread(target=run, daemon=True).start()

    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, on_hup)
    print(f"semid serve: {first.partition_key} ({first.n_tracks} tracks, model {first.bundle.model_dir}) "
          f"on http://{args.host}:{args.port}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, access_log=False)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="semid", description="semid command line")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="serve one trained partition over HTTP")
    s.add_argument("--partition", required=True, help="grid partition '<h>|<scheme>', e.g. '64|v1-k1024'")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--warehouse", default=warehouse_from_env())
    s.add_argument("--artifacts", default=artifacts_from_env())
    s.add_argument("--model-dir", default=None, help="serve this model folder instead of the one `recommender` trained for the partition")
    s.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads (1: concurrent requests run in parallel threads instead)")
    s.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    if args.command == "serve":
        from .errors import SemidError

        try:
            return _serve(args)
        except SemidError as e:
            print(f"semid serve: {e}", file=sys.stderr)
            return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
