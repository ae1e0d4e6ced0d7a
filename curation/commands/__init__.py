"""One module per `curate` command; see curation/cli.py."""
