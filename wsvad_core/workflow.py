"""What every glue script does first: send stderr and logging to the rule's log file and size
torch's thread pool to the rule's threads."""
from __future__ import annotations

import logging
import sys


def setup_job(snakemake) -> logging.Logger:
    log_file = open(snakemake.log[0], "w", buffering=1)
    sys.stderr = sys.stdout = log_file
    logging.basicConfig(stream=log_file, level=logging.INFO, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        import torch

        torch.set_num_threads(max(1, int(snakemake.threads)))
    except ImportError:
        pass
    logging.getLogger("wsvad").info("rule %s, wildcards %s", snakemake.rule, dict(snakemake.wildcards))
    return logging.getLogger("wsvad")
