from __future__ import annotations

from pathlib import Path

import typer

NAME = "pack"
ORDER = 70
HELP = "Tokenize as Hermes ChatML with loss labels and best-fit pack into seq-len sequences (token-balanced Arrow shards)."


def command(
    src: Path = typer.Argument(..., help="Conversation Parquet to pack."),
    out: Path = typer.Option(..., "--out", help="Output folder (datasets.load_from_disk loads it)."),
    seq_len: int = typer.Option(None, "--seq-len", help="Tokens per packed sequence [8192]."),
    shards: int = typer.Option(None, "--shards", help="Number of Arrow files [1]."),
    tokenizer: str = typer.Option(None, "--tokenizer", help="llama3 or PATH/tokenizer.json [llama3]."),
    oversize: str = typer.Option(None, "--oversize", help="drop|truncate|split for conversations over seq-len [drop]."),
    seed: int = typer.Option(None, "--seed", help="Seed of the pack shuffle [0]."),
    rejects: Path = typer.Option(None, "--rejects", help="Rejects Parquet [OUT/rejects.parquet]."),
    config: Path = typer.Option(None, "--config", help="Recipe YAML; its `pack` section sets the defaults."),
) -> None:
    from ..console import console, print_counts
    from ..io import read_conversations, write_json_atomic, write_table
    from ..manifest import Manifest
    from ..pack import STAGE, PackConfig, check_out_dir, pack_table, write_pack_dir
    from ..recipe import stage_config

    cfg = stage_config(config, STAGE, PackConfig, seq_len=seq_len, shards=shards, tokenizer=tokenizer,
                       oversize=oversize, seed=seed)
    check_out_dir(out)
    rejects = rejects or out / "rejects.parquet"
    manifest = Manifest(NAME, {"src": str(src), "out": str(out), "rejects": str(rejects), **cfg.model_dump()}, [src])
    table = read_conversations(src)
    result = pack_table(table, cfg)
    if table.num_rows != result.kept.num_rows + result.rejected.num_rows:
        raise AssertionError(f"pack: rows in {table.num_rows} != kept {result.kept.num_rows} + rejected {result.rejected.num_rows}")
    files = write_pack_dir(result, out)
    write_table(result.rejected, rejects)
    manifest.outputs = [*files, str(out / "samples.parquet"), str(out / "pack_stats.json"), str(rejects)]
    manifest.rows_in, manifest.rows_out = table.num_rows, result.kept.num_rows
    manifest.count_rejects(result.rejected_by_reason().elements())
    manifest.stats = {k: v for k, v in result.stats.items() if k != "shards"}
    write_json_atomic(out / "manifest.json", manifest.to_dict())
    s = result.stats
    console.print(
        f"{s['num_samples']:,} samples, {s['total_tokens']:,} tokens -> {s['num_packs']:,} packs of {s['seq_len']} "
        f"(lower bound {s['lower_bound_packs']:,}), efficiency {100 * s['efficiency']:.2f}%, {len(files)} shard(s) in {out}",
        soft_wrap=True,
    )
    print_counts(NAME, manifest.rows_in, manifest.rows_out, manifest.rejected_by_reason)
