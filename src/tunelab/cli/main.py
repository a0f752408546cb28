"""`tunelab` command line: train, compare, recommend, tune, continual, eval, predict, pseudo-label, merge, export, serve, ..."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import click
import typer
from typer.core import TyperGroup
from rich.console import Console
from rich.table import Table

from tunelab.cli.errors import DEBUG, err_console, user_errors
from tunelab.cli.continual import continual_command
from tunelab.cli.merge import merge_command
from tunelab.cli.predict import predict_command
from tunelab.cli.pseudo_label import pseudo_label_command
from tunelab.cli.recommend import recommend_command
from tunelab.cli.tables import experiment_config, experiment_out, parse_csv, print_tune
from tunelab.errors import TunelabError

__all__ = ["app", "main"]

class _Group(TyperGroup):
    """Lets `--resume` be given without a value (click options always take one): `--resume` alone is read
    as `--resume=` (empty: the config's output), `--resume DIR` as usual."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if next((a for a in args if not a.startswith("-")), None) == "train":  # compare's --resume is a flag
            args = ["--resume=" if a == "--resume" and (i + 1 == len(args) or args[i + 1].startswith("-")) else a
                    for i, a in enumerate(args)]
        return super().parse_args(ctx, args)


app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, cls=_Group,
                  help="Fine-tune pre-trained models on your own data.")
out_console = Console()


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks for errors.")) -> None:
    DEBUG["on"] = debug


@app.command()
@user_errors
def train(
    config: Optional[Path] = typer.Argument(None, help="YAML run config (optional with --resume RUN_DIR)."),
    set_: list[str] = typer.Option([], "--set", help="Override a key: --set optim.lr=1e-4 (repeatable)."),
    out: Optional[str] = typer.Option(None, "--out", help="Run directory (default: the config's output)."),
    demo: bool = typer.Option(False, "--demo", help="Run the built-in demo: MiniLM on BBC News."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run directory when this run succeeds."),
    resume: Optional[str] = typer.Option(
        None, "--resume", metavar="[RUN_DIR]",
        help="Continue an interrupted run from its latest valid checkpoint (default RUN_DIR: the config's output)."),
    trust_pickle: bool = typer.Option(False, "--trust-pickle",
                                      help="Accept pickle weights (.bin/.pt/.ckpt), loaded with weights_only=True."),
    nproc: int = typer.Option(1, "--nproc", min=1, help="Train in N processes on this machine (DDP, or FSDP "
                                                         "with train.distributed: fsdp; launched by torchrun's elastic "
                                                         "agent); batch_size stays the global batch."),
    port: Optional[int] = typer.Option(None, "--port", min=1, max=65535,
                                       help="--nproc: the processes' rendezvous port (default: a free one)."),
) -> None:
    """Fine-tune a model as the config says and write a run directory."""
    from tunelab.catalog import load_config
    from tunelab.configs import DEMO_CONFIG
    from tunelab.errors import RunInterrupted
    from tunelab.orchestration.train import train as train_run
    from tunelab.training.distributed import is_main_process

    if nproc > 1:
        from tunelab.cli.launch import launch_local, train_argv

        return launch_local(nproc, train_argv(config, set_, out, demo, overwrite, resume, trust_pickle), port)
    config, out = _resume_paths(config, out, resume)
    if demo == (config is not None):
        raise TunelabError("train: give a CONFIG file or --demo (one of them)")
    run_config = load_config(DEMO_CONFIG if demo else config, set_)
    try:
        summary = train_run(run_config, out=out, overwrite=overwrite, console=err_console, resume=resume is not None,
                               trust_pickle=trust_pickle)
    except RunInterrupted as err:
        target = Path(out or run_config.output)
        again = f"tunelab train {'--demo' if demo else config} --resume {target}"
        raise RunInterrupted(f"{err}. Resume with: {again}", err.signum) from None
    if is_main_process():  # rank 0 reports for the run
        _print_run_table(summary)


def _print_run_table(summary: Any) -> None:
    """The run's figures as a table on stdout (summary: orchestration.run_one.RunSummary, imported lazily)."""
    table = Table(title="tunelab run", show_header=False)
    sections = summary.test_metrics.get("tasks") or {}  # a multi-task run: the tasks' means, then each task's
    mean = "mean " if sections else ""
    for key, value in [*((f"{mean}{k}", v) for k, v in summary.test_metrics.items()),
                       *((f"{n}/{k}", v) for n, m in sections.items() for k, v in m.items())]:
        if isinstance(value, float):
            table.add_row(f"test {key}", f"{value:.4f}")
    table.add_row("trainable / total params", f"{summary.trainable_params:,} / {summary.total_params:,} "
                  f"({100 * summary.trainable_params / summary.total_params:.2f}%)")
    table.add_row("epochs", str(summary.epochs_run))
    table.add_row("train time", f"{summary.train_time_s:.1f} s")
    table.add_row("wall time", f"{summary.wall_time_s:.1f} s")
    table.add_row("peak memory (RSS)", f"{summary.peak_rss_mb:.0f} MiB")
    table.add_row("run directory", str(summary.run_dir))
    out_console.print(table)


def _resume_paths(config: Optional[Path], out: Optional[str], resume: Optional[str]) -> tuple[Optional[Path], Optional[str]]:
    """With `--resume RUN_DIR`: the run folder becomes the output, and without CONFIG the run's own config is used."""
    if not resume:
        return config, out
    from tunelab.artifacts.rundir import staging_path
    from tunelab.training.resume import resolve_resume_dir

    if config is None and Path(resume).is_file():  # `train --resume config.yaml`: the value was the CONFIG
        return Path(resume), out
    target = resolve_resume_dir(resume)
    if out is not None and Path(out).expanduser().resolve() != target.resolve():
        raise TunelabError(f"train: --out {out} and --resume {resume} name different runs; give one of them")
    if config is None:
        staged = staging_path(target) / "config.yaml"
        if not staged.is_file() and (target / "config.yaml").is_file():
            staged = target / "config.yaml"  # a finished run: train says there is nothing to resume
        if not staged.is_file():
            raise TunelabError(f"--resume: {staged} not found, so the run's config is unknown; give the CONFIG "
                               f"as well (tunelab train CONFIG --resume {resume}), or check the run folder")
        config = staged
    return config, str(target)


@app.command()
@user_errors
def compare(
    config: Optional[Path] = typer.Argument(None, help="YAML run config: model, task, data, budget."),
    strategies: Optional[str] = typer.Option(None, "--strategies", help="Comma-separated strategies (default: every "
                                             "registered one that applies to the task and model)."),
    seeds: str = typer.Option("0", "--seeds", help="Comma-separated training seeds (the split stays the config's)."),
    data_fractions: str = typer.Option("1.0", "--data-fractions", help="Comma-separated shares of the training "
                                       "split, nested (0.1,0.3,1.0)."),
    fraction_budget: str = typer.Option("steps", "--fraction-budget", help="steps: a fraction's row trains as many "
                                        "optimizer steps as the whole split's (epochs x 1/fraction); epochs: the same "
                                        "epochs."),
    out: Optional[Path] = typer.Option(None, "--out", help="Comparison folder (default: the config's output + "
                                       "'-compare')."),
    set_: list[str] = typer.Option([], "--set", help="Override a key for every row (optim.lr=1e-4) or for one "
                                   "strategy (lora.optim.lr=2e-3); repeatable."),
    demo: bool = typer.Option(False, "--demo", help="Compare on the built-in demo: MiniLM on BBC News."),
    resume: bool = typer.Option(False, "--resume", help="Skip finished rows, continue the unfinished one."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the rows of an earlier comparison in --out."),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="Accept pickle weights (see train)."),
) -> None:
    """Run every strategy on the same data and split, side by side: a table, a verdict, compare.json and a report."""
    from tunelab.orchestration.compare import CompareRequest, check_request, compare as run_compare
    from tunelab.orchestration.compare_summary import compare_table

    source, raw = experiment_config("compare", config, demo)
    request = CompareRequest(out=experiment_out(out, raw, "compare"),
                             strategies=parse_csv(strategies, str, "--strategies") if strategies else None,
                             seeds=parse_csv(seeds, int, "--seeds"), fractions=parse_csv(data_fractions, float, "--data-fractions"),
                             overrides=set_, resume=resume, overwrite=overwrite, trust_pickle=trust_pickle,
                             fraction_budget=fraction_budget)
    check_request(request)
    result = run_compare(raw, request, console=err_console, source=str(source))
    out_console.print(compare_table(result))
    if result.verdict:
        out_console.print(f"[bold]verdict:[/] {result.verdict['strategy']}: {result.verdict['reason']}")
    out_console.print(f"{result.out / 'compare.json'}  ({result.wall_time_s:.0f} s in all)")
    if result.all_failed:
        raise typer.Exit(1)


for _name, _command in (("recommend", recommend_command), ("continual", continual_command),
                        ("pseudo-label", pseudo_label_command), ("predict", predict_command),
                        ("merge", merge_command)):
    app.command(_name)(user_errors(_command))


@app.command()
@user_errors
def tune(
    config: Optional[Path] = typer.Argument(None, help="YAML run config (its strategy is the one searched)."),
    trials: int = typer.Option(..., "--trials", min=1, help="Trials to finish (pruned ones count; failed ones not)."),
    space: Optional[Path] = typer.Option(None, "--space", help="SPACE.yaml: key paths and ranges "
                                         "(optim.lr: {low: 1.0e-5, high: 1.0e-3, log: true}); default: the strategy's."),
    metric: Optional[str] = typer.Option(None, "--metric", help="Validation metric to optimise (default: the "
                                         "config's early_stopping.metric)."),
    timeout: Optional[float] = typer.Option(None, "--timeout", min=0.1, help="Stop starting trials after MIN minutes."),
    sampler: str = typer.Option("tpe", "--sampler", help="tpe | random | grid"),
    pruner: str = typer.Option("median", "--pruner", help="median | halving | none (at epoch ends, on validation)"),
    out: Optional[Path] = typer.Option(None, "--out", help="Search folder (default: the config's output + '-tune')."),
    set_: list[str] = typer.Option([], "--set", help="Override a config key for every trial (repeatable)."),
    demo: bool = typer.Option(False, "--demo", help="Search on the built-in demo: MiniLM on BBC News."),
    resume: bool = typer.Option(False, "--resume", help="Continue the study in --out (DIR/study.db)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start over, removing an earlier search in --out."),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="Accept pickle weights (see train)."),
) -> None:
    """Search hyperparameters with Optuna; trials share the data, the base model and the activation cache."""
    from tunelab.config.loading import read_config_file
    from tunelab.configs import DEMO_CONFIG
    from tunelab.orchestration.tune import PRUNERS, SAMPLERS, TuneRequest, tune as run_tune

    if demo == (config is not None):
        raise TunelabError("tune: give a CONFIG file or --demo (one of them)")
    for option, value, choices in (("--sampler", sampler, SAMPLERS), ("--pruner", pruner, PRUNERS)):
        if value not in choices:
            raise TunelabError(f"{option} {value!r}: choose one of {', '.join(choices)}")
    source = DEMO_CONFIG if demo else config
    raw = read_config_file(source, set_)
    request = TuneRequest(out=experiment_out(out, raw, "tune"),
                          trials=trials, space=space, metric=metric, timeout_min=timeout, sampler=sampler,
                          pruner=pruner, resume=resume, overwrite=overwrite, trust_pickle=trust_pickle)
    result = run_tune(raw, request, console=err_console, source=str(source))
    print_tune(result, out_console)


@app.command()
@user_errors
def validate(config: Path = typer.Argument(..., help="YAML run config."),
             set_: list[str] = typer.Option([], "--set", help="Override a key (repeatable).")) -> None:
    """Check a config without running anything; print the resolved form."""
    from tunelab.catalog import load_config
    from tunelab.config.loading import config_to_yaml

    resolved = load_config(config, set_)
    out_console.print(f"[green]{config}: valid[/]")
    out_console.print(config_to_yaml(resolved), highlight=False, markup=False)


@app.command("eval")
@user_errors
def eval_(run_dir: Path = typer.Argument(..., help="A run directory (`tunelab train`) or an export directory."),
          data: Path = typer.Option(..., "--data", help="Labelled CSV/JSONL/Parquet file to score."),
          output: Optional[Path] = typer.Option(None, "--output", help="Also write the metrics as JSON here."),
          head: Optional[str] = typer.Option(None, "--head", help="The head of a multi-task run to score.")) -> None:
    """Score a trained run (or an export of one) on a labelled file."""
    from tunelab.serving.predict import evaluate_file

    metrics = evaluate_file(run_dir, data, head)
    scalars = {k: v for k, v in metrics.items() if isinstance(v, float)}
    table = Table(title=f"{data.name}", show_header=False)
    for key, value in scalars.items():
        table.add_row(key, f"{value:.4f}")
    out_console.print(table)
    if output is not None:
        from tunelab.atomic import atomic_write_json

        atomic_write_json(output, metrics)


@app.command()
@user_errors
def generate(run_dir: Path = typer.Argument(..., help="A run directory of task instruction_tuning."),
             prompt: list[str] = typer.Option(..., "--prompt", help="The user's message (repeatable: one reply each)."),
             system: Optional[str] = typer.Option(None, "--system", help="A system message before the prompt."),
             max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", min=1,
                                                          help="Default: the run's generation.max_new_tokens.")) -> None:
    """Write the fine-tuned model's reply to a prompt (greedy decoding, the model's chat template)."""
    from tunelab.artifacts.model_io import load_run
    from tunelab.data.chat import instruction_record
    from tunelab.serving.predict import generate_replies
    from tunelab.tasks.registry import get_task

    run = load_run(run_dir)
    if not get_task(run.config.task).generative:
        raise TunelabError(f"generate: {run_dir} is a {run.config.task} run; generate needs an instruction_tuning run "
                           "(use `tunelab predict` for this one)")
    for i, text in enumerate(prompt, start=1):
        if not text.strip():
            raise TunelabError(f"--prompt #{i}: the prompt is empty; give the message to answer")
    records = [instruction_record(text, "", f"--prompt #{i}", system) for i, text in enumerate(prompt, start=1)]
    texts, stopped = generate_replies(run, records, max_new_tokens=max_new_tokens)
    for text, done in zip(texts, stopped):
        out_console.print(text, highlight=False, markup=False, soft_wrap=True)
        if not done:
            err_console.print(f"(stopped at {max_new_tokens or run.config.generation.max_new_tokens} new tokens "
                              "without an end-of-turn token)")


@app.command()
@user_errors
def export(run_dir: Path = typer.Argument(..., help="A run directory written by `tunelab train`."),
           format: Optional[str] = typer.Option(
               None, "--format", metavar="onnx|torchscript|merged",
               help="onnx: an ONNX graph (onnxruntime); torchscript: a traced torch.jit module (deprecated by PyTorch, "
                    "kept because users ask for it; prefer onnx); merged: the adapter folded into the base weights, a "
                    "plain Hugging Face directory (LoRA, IA3)."),
           quantize: Optional[str] = typer.Option(None, "--quantize", metavar="int8",
                                                  help="With --format onnx: dynamic int8 weights (onnxruntime)."),
           merge: bool = typer.Option(False, "--merge", help="Same as --format merged."),
           out: Path = typer.Option(..., "--out", help="Folder for the exported model (must be new or empty).")) -> None:
    """Export a run, checked against the run's own outputs on its test split before anything is written."""
    from tunelab.export import export_run

    if merge and format not in (None, "merged"):
        raise TunelabError(f"export: --merge is --format merged; it cannot be combined with --format {format}")
    format = "merged" if merge else format
    if format is None:
        raise TunelabError("export: give --format onnx, torchscript or merged (for example: tunelab export RUN_DIR "
                           "--format onnx --out exported/)")
    if format == "torchscript":
        err_console.print("note: TorchScript is deprecated by PyTorch (torch.jit.trace); --format onnx is the "
                          "maintained path")
    meta = export_run(run_dir, out, format=format, quantize=quantize)
    out_console.print(_export_summary(out, meta), highlight=False, markup=False, soft_wrap=True)


def _export_summary(out: Path, meta: dict) -> str:
    """One line per figure of the parity check (export.json holds them all)."""
    parity = meta["parity"]
    kind = meta["format"] + (f" {meta['quantize']}" if meta.get("quantize") else "")
    lines = [f"wrote {out} ({kind}; adapter: {meta['adapter']})",
             f"parity on {parity['data']}: max |Δlogit| {parity['max_abs_logit_diff']:.2e}"
             + (f", decisions agree on {100 * parity['decision_agreement']:.2f}%" if "decision_agreement" in parity else "")
             + (f" of {parity['decoding_steps']} decoding steps" if "decoding_steps" in parity else "")]
    if "reply_agreement" in parity:
        lines.append(f"  replies ({parity['reply_tokens']} tokens at most) identical to the run's on "
                     f"{100 * parity['reply_agreement']:.1f}% of {parity['examples']} test prompts")
    for key, delta in parity.get("metric_delta", {}).items():
        if key in ("accuracy", "macro_f1", "entity_f1", "micro_f1", "mse", "mae", "r2", "exact_match", "rouge_l"):
            lines.append(f"  {key}: {parity['metrics_pytorch'][key]:.4f} (PyTorch) -> "
                         f"{parity['metrics_export'][key]:.4f} (export), delta {delta:+.4f}")
    return "\n".join(lines)


@app.command()
@user_errors
def report(folder: Path = typer.Argument(..., help="A run directory (with manifest.json), a compare directory "
                                                    "(with compare.json) or a search directory (with tune.json).")) -> None:
    """Rebuild FOLDER/report.html from the folder's files (no model or data needed)."""
    from tunelab.report import directory_kind, write_report

    path = write_report(folder)
    out_console.print(f"wrote {path} ({directory_kind(folder)} report)", highlight=False)


@app.command()
@user_errors
def serve(run_dir: Optional[Path] = typer.Argument(None, help="A run directory (`tunelab train`) or an export "
                                                         "directory (`tunelab export`)."),
          adapter: list[str] = typer.Option([], "--adapter", help="NAME=RUN_DIR of an adapter run (repeatable); "
                                            "adapters share one base; a request names one."),
          host: str = typer.Option("127.0.0.1", "--host"), port: int = typer.Option(8000, "--port"),
          max_batch: int = typer.Option(32, "--max-batch", min=1, help="Inputs per forward pass (micro-batch)."),
          no_batching: bool = typer.Option(False, "--no-batching", help="One request per pass (= --max-batch 1)."),
          max_wait_ms: float = typer.Option(5.0, "--max-wait-ms", min=0, help="How long a batch waits for more."),
          max_queue: int = typer.Option(256, "--max-queue", min=1, help="Requests waiting for a batch; more get 429."),
          max_inputs: int = typer.Option(64, "--max-inputs", min=1, help="Texts per request; more get 413."),
          max_chars: int = typer.Option(20_000, "--max-chars", min=1, help="Characters per text; longer get 413."),
          graceful_timeout: float = typer.Option(30.0, "--graceful-timeout", min=0,
                                                 help="Seconds to finish requests in flight after SIGTERM."),
          threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch threads (default: one per "
                                                "core; 1 can be faster on a CPU shared with other work).")) -> None:
    """Serve a run (or several adapters on one base) over HTTP: /v1/predict, /v1/generate, /health, /metrics, /docs."""
    from tunelab.optional import require

    require("tunelab serve", "fastapi", "uvicorn", "prometheus_client", error=TunelabError)
    from tunelab.serving.adapters import parse_adapter_specs
    from tunelab.serving.app import ServeSettings
    from tunelab.serving.server import serve as run_server

    settings = ServeSettings(max_batch=1 if no_batching else max_batch, max_wait_ms=max_wait_ms, max_queue=max_queue,
                             max_inputs=max_inputs, max_chars=max_chars)
    run_server(run_dir, parse_adapter_specs(adapter), settings, host=host, port=port,
               graceful_timeout_s=graceful_timeout, threads=threads)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
