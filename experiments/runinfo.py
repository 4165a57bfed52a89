"""runinfo.py -- what the table scripts (table.py, surrogate_table.py) read from a run directory beside the
run's own outputs."""
import json, os


def profile_seconds(run):
    """The seconds of the sensitivity profile a run's --prior read (its manifest's search.start.prior), else 0."""
    try:
        with open(os.path.join(run, "manifest.json")) as f:
            prior = json.load(f)["search"]["start"]["prior"]
        with open(os.path.join(prior, "sensitivity.json")) as f:
            return float(json.load(f)["seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0
