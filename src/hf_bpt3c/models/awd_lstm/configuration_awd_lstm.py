"""Configuration of the AWD-LSTM language model and its BPT3C classifier (ULMFiT)."""

from __future__ import annotations

from transformers import PretrainedConfig

try:  # the error of transformers' field validators (huggingface_hub's strict dataclasses)
    from huggingface_hub.errors import StrictDataclassError
except ImportError:  # an older huggingface_hub: nothing to catch
    StrictDataclassError = ()

# fastai v2 `awd_lstm_lm_config` / `awd_lstm_clas_config` dropouts, before `drop_mult` scaling.
FASTAI_LM_DROPOUTS = {
    "output_dropout": 0.1,
    "hidden_dropout": 0.15,
    "input_dropout": 0.25,
    "embedding_dropout": 0.02,
    "weight_dropout": 0.2,
}
FASTAI_CLASSIFIER_DROPOUTS = {
    "output_dropout": 0.4,
    "hidden_dropout": 0.3,
    "input_dropout": 0.4,
    "embedding_dropout": 0.05,
    "weight_dropout": 0.5,
}
_DROPOUT_NAMES = tuple(FASTAI_LM_DROPOUTS)
SIZE_FIELDS = ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers")
COMPUTE_DTYPES = ("float32", "bfloat16", "auto")
CLASSIFIER_POOLINGS = ("window", "document")  # pooled: the kept window (fastai's rule) or every token
PROBLEM_TYPES = (None, "single_label_classification", "multi_label_classification", "regression")
_INT_FIELDS = ("vocab_size", "embedding_size", "hidden_size", "num_hidden_layers", "bptt", "max_len")
_FLAG_NAMES = ("backwards", "tie_word_embeddings", "raise_on_nonfinite", "use_cache")
# Upper bounds of config.json's sizes, far above any AWD-LSTM (fastai's: vocab 60,000, embedding 400, hidden 1,152,
# 3 layers): a hostile or mistyped value is refused before anything is allocated.
SIZE_LIMITS = {"vocab_size": 2**24, "embedding_size": 2**16, "hidden_size": 2**16, "num_hidden_layers": 64}
MAX_HEAD_SIZE = 2**16  # a head layer's width and the number of classes
MAX_HEAD_LAYERS = 64
MAX_PARAMETERS = 2**34  # 17 billion parameters, 64 GiB in float32 (fastai's WT103 model: 24 million)

# Written into every saved config.json, so that a folder loads with `trust_remote_code=True` through any of the
# Auto classes without hf_bpt3c installed (save_pretrained copies these two files next to the weights).
AUTO_MAP = {
    "AutoConfig": "configuration_awd_lstm.AwdLstmConfig",
    "AutoModel": "modeling_awd_lstm.AwdLstmModel",
    "AutoModelForCausalLM": "modeling_awd_lstm.AwdLstmForCausalLM",
    "AutoModelForSequenceClassification": "modeling_awd_lstm.AwdLstmForSequenceClassification",
}


def _as_list(value, name: str) -> list:
    """A config list given as a list or tuple; `TypeError` naming the field for anything else (a string would
    otherwise become a list of characters)."""
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"AwdLstmConfig.{name} must be a list, got {type(value).__name__} ({value!r})")
    return list(value)


class AwdLstmConfig(PretrainedConfig):
    r"""Configuration for [`AwdLstmModel`], [`AwdLstmForCausalLM`] and [`AwdLstmForSequenceClassification`].

    Defaults reproduce fastai v2's `AWD_LSTM` with `awd_lstm_lm_config` (the language-model dropouts) and the
    classifier of `get_text_classifier` (`seq_len=72`, `max_len=72*20`, `lin_ftrs=[50]`). For fastai's classifier
    dropouts (`awd_lstm_clas_config` scaled by `text_classifier_learner`'s `drop_mult=0.5`) use
    `AwdLstmConfig.for_classification()`.

    Args:
        vocab_size: number of token ids.
        embedding_size: size of the token embedding and of the last LSTM layer's output (tied decoder).
        hidden_size: size of every LSTM layer except the last.
        num_hidden_layers: number of stacked single-layer LSTMs.
        pad_token_id: id of the padding token (fastai: `xxpad` = 1).
        bptt: chunk length of back-propagation through time; BPT3C reads documents in chunks of this many tokens.
        max_len: the classifier keeps (pools, and back-propagates into) the chunks that begin within the last
            `max_len` tokens of each document; earlier chunks only warm up the state.
        classifier_pooling: which tokens the classifier concat-pools (output at the last token, max, mean).
            `"window"` (fastai's rule): the kept window, the chunks in the last `max_len` tokens. `"document"`:
            every token of the document; the running max and mean are carried from chunk to chunk, the chunks
            before the kept window still run without autograd (training memory stays flat at any length), and
            in eval it equals `"window"` with an unbounded `max_len`.
        tie_word_embeddings: tie the LM decoder's weight to the input embedding.
        embedding_dropout: probability of dropping a whole vocabulary row of the embedding (per chunk).
        weight_dropout: DropConnect probability on each layer's hidden-to-hidden weights (per chunk).
        input_dropout: variational (time-locked) dropout on the embedded input.
        hidden_dropout: variational dropout between LSTM layers.
        output_dropout: variational dropout before the LM decoder; for the classifier, the dropout of the first
            head block (fastai's `ps[0] = output_p`).
        classifier_hidden_sizes: sizes of the classifier head's hidden layers (fastai `lin_ftrs`, default `[50]`).
        classifier_dropouts: dropout of each head block after the first (fastai `ps`, default `0.1` each).
        backwards: a ULMFiT backward model, which reads text right to left. The classifier reverses each
            document itself (callers and pipelines pass text in reading order); the language model takes its
            input as given (train it on reversed streams: `LMStreamDataset(..., backwards=True)`).
        initializer_range: embeddings are initialised uniformly in `[-initializer_range, initializer_range]`.
        raise_on_nonfinite: make the forward raise `FloatingPointError` when the loss or logits are not finite.
        compute_dtype: `"float32"` (default, exact), `"bfloat16"` or `"auto"`. With `"bfloat16"` the LSTM matrix
            products on CPU run in bfloat16 (gate arithmetic, state and weights stay float32), faster with AVX-512
            BF16 or AMX (docs/benchmarks.md has the figures). On a CPU without native bfloat16 (AVX2, AVX-512
            without BF16) bfloat16 would be much slower: the model warns once and computes in float32
            (`HF_BPT3C_FORCE_BF16=1` keeps bfloat16; see `hardware`). `"auto"` picks bfloat16 where the
            device multiplies it natively and float32 elsewhere, without a warning. On CUDA the LSTM runs on
            bfloat16 copies of its input, state and weights (cuDNN's bfloat16 LSTM where cuDNN has one, 9.13+;
            PyTorch's own kernels otherwise).
    """

    model_type = "awd_lstm"
    keys_to_ignore_at_inference = ["state"]

    def __init__(
        self,
        vocab_size: int = 60000,
        embedding_size: int = 400,
        hidden_size: int = 1152,
        num_hidden_layers: int = 3,
        pad_token_id: int = 1,
        bos_token_id: int = 2,
        eos_token_id: int = 3,
        bptt: int = 72,
        max_len: int = 1440,
        classifier_pooling: str = "window",
        tie_word_embeddings: bool = True,
        embedding_dropout: float = FASTAI_LM_DROPOUTS["embedding_dropout"],
        weight_dropout: float = FASTAI_LM_DROPOUTS["weight_dropout"],
        input_dropout: float = FASTAI_LM_DROPOUTS["input_dropout"],
        hidden_dropout: float = FASTAI_LM_DROPOUTS["hidden_dropout"],
        output_dropout: float = FASTAI_LM_DROPOUTS["output_dropout"],
        classifier_hidden_sizes: list[int] | None = None,
        classifier_dropouts: list[float] | None = None,
        backwards: bool = False,
        initializer_range: float = 0.1,
        raise_on_nonfinite: bool = False,
        use_cache: bool = True,
        compute_dtype: str = "float32",
        **kwargs,
    ):
        self.vocab_size = vocab_size
        self.embedding_size = embedding_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.bptt = bptt
        self.max_len = max_len
        self.classifier_pooling = classifier_pooling
        self.embedding_dropout = embedding_dropout
        self.weight_dropout = weight_dropout
        self.input_dropout = input_dropout
        self.hidden_dropout = hidden_dropout
        self.output_dropout = output_dropout
        if classifier_hidden_sizes is None:
            classifier_hidden_sizes = [50]
        self.classifier_hidden_sizes = _as_list(classifier_hidden_sizes, "classifier_hidden_sizes")
        if classifier_dropouts is None:
            classifier_dropouts = [0.1] * len(self.classifier_hidden_sizes)
        self.classifier_dropouts = _as_list(classifier_dropouts, "classifier_dropouts")
        self.backwards = backwards
        self.initializer_range = initializer_range
        self.raise_on_nonfinite = raise_on_nonfinite
        self.compute_dtype = compute_dtype
        self.use_cache = use_cache
        self.tie_word_embeddings = tie_word_embeddings
        kwargs["auto_map"] = {**AUTO_MAP, **(kwargs.get("auto_map") or {})}
        self._check_int_fields()  # before transformers' own validators compare them
        super().__init__(
            pad_token_id=pad_token_id,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            **kwargs,
        )
        self.tie_word_embeddings = tie_word_embeddings
        self.validate_awd_lstm()

    def _check_int_fields(self) -> None:
        for name in _INT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"AwdLstmConfig.{name} must be an int, got {type(value).__name__} ({value!r})")

    def validate_awd_lstm(self) -> None:
        """Raise `ValueError`/`TypeError` naming the field when a size, chunking, dropout, flag or head value is
        invalid: sizes are ints in [1, their bound] (`SIZE_LIMITS`), dropouts numbers in [0, 1), flags JSON booleans
        (`"false"` is refused, not read as true), and the model may hold at most `MAX_PARAMETERS` parameters, so
        that a hostile config.json is refused before any weight is allocated."""
        self._check_int_fields()
        for name in _INT_FIELDS:
            value = getattr(self, name)
            if value <= 0:
                raise ValueError(f"AwdLstmConfig.{name} must be > 0, got {value}")
            if name in SIZE_LIMITS and value > SIZE_LIMITS[name]:
                raise ValueError(f"AwdLstmConfig.{name} must be <= {SIZE_LIMITS[name]:,}, got {value:,}")
        if self.max_len < self.bptt:
            raise ValueError(
                f"AwdLstmConfig.max_len ({self.max_len}) must be >= bptt ({self.bptt}): the kept window holds "
                "at least one chunk"
            )
        for name in _DROPOUT_NAMES:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"AwdLstmConfig.{name} must be a float in [0, 1), got {value!r}")
        for name in _FLAG_NAMES:
            value = getattr(self, name, False)
            if not isinstance(value, bool):
                raise TypeError(
                    f"AwdLstmConfig.{name} must be true or false (a JSON boolean), got {type(value).__name__} "
                    f"({value!r})"
                )
        self._validate_head()
        if self.classifier_pooling not in CLASSIFIER_POOLINGS:
            raise ValueError(
                f'AwdLstmConfig.classifier_pooling must be "window" or "document", got {self.classifier_pooling!r}'
            )
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(
                f'AwdLstmConfig.compute_dtype must be one of "float32", "bfloat16", "auto", got {self.compute_dtype!r}'
            )
        pad = self.pad_token_id
        if pad is not None and not (isinstance(pad, int) and not isinstance(pad, bool) and 0 <= pad < self.vocab_size):
            raise ValueError(f"AwdLstmConfig.pad_token_id must be an int in [0, vocab_size), got {pad!r}")
        value = self.initializer_range
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1e3:
            raise ValueError(f"AwdLstmConfig.initializer_range must be a number in [0, 1000], got {value!r}")
        count = self.parameter_count()
        if count > MAX_PARAMETERS:
            raise ValueError(
                f"AwdLstmConfig describes a model of {count:,} parameters ({4 * count / 2**30:,.0f} GiB in float32), "
                f"more than {MAX_PARAMETERS:,}: vocab_size, embedding_size, hidden_size or num_hidden_layers is "
                "implausible"
            )

    def _validate_head(self) -> None:
        """The classifier head: lists of sizes and dropouts of one length, the labels indexed 0..n-1."""
        for name in ("classifier_hidden_sizes", "classifier_dropouts"):
            value = getattr(self, name)
            if not isinstance(value, list):
                raise TypeError(f"AwdLstmConfig.{name} must be a list, got {type(value).__name__} ({value!r})")
            if len(value) > MAX_HEAD_LAYERS:
                raise ValueError(f"AwdLstmConfig.{name} may hold at most {MAX_HEAD_LAYERS} entries, got {len(value)}")
        for index, size in enumerate(self.classifier_hidden_sizes):
            if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_HEAD_SIZE:
                raise ValueError(
                    f"AwdLstmConfig.classifier_hidden_sizes[{index}] must be an int in [1, {MAX_HEAD_SIZE:,}], "
                    f"got {size!r}"
                )
        for index, p in enumerate(self.classifier_dropouts):
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
                raise ValueError(f"AwdLstmConfig.classifier_dropouts[{index}] must be a float in [0, 1), got {p!r}")
        if len(self.classifier_dropouts) != len(self.classifier_hidden_sizes):
            raise ValueError(
                "AwdLstmConfig.classifier_dropouts must have one entry per classifier hidden layer "
                f"({len(self.classifier_hidden_sizes)}), got {self.classifier_dropouts!r}"
            )
        id2label = self.id2label
        if id2label is not None:
            if not 1 <= len(id2label) <= MAX_HEAD_SIZE:
                count = len(id2label)
                raise ValueError(f"AwdLstmConfig.id2label must name 1 to {MAX_HEAD_SIZE:,} classes, got {count}")
            if sorted(id2label) != list(range(len(id2label))):
                raise ValueError(
                    f"AwdLstmConfig.id2label must have the class ids 0..{len(id2label) - 1} as keys, got "
                    f"{sorted(id2label)[:10]}"
                )
        if self.problem_type not in PROBLEM_TYPES:
            raise ValueError(f"AwdLstmConfig.problem_type must be one of {PROBLEM_TYPES}, got {self.problem_type!r}")

    def parameter_count(self) -> int:
        """The number of parameters of the largest model of this config (the classifier; the LM's decoder is tied
        and adds a bias): the bound `validate_awd_lstm` checks, computed from the sizes without allocating."""
        count = self.vocab_size * (self.embedding_size + 1)
        for n_in, n_out in self.layer_sizes:
            count += 4 * n_out * (n_in + n_out + 2)
        n_in = 3 * self.embedding_size
        for n_out in [*self.classifier_hidden_sizes, self.num_labels or 0]:
            count += 2 * n_in + n_in * n_out + n_out
            n_in = n_out
        return count

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs) -> AwdLstmConfig:
        """Build from a `config.json` dictionary; a missing size or a wrong-typed or invalid value raises an
        error that names config.json and the field (a missing size would otherwise silently take its default)."""
        missing = [name for name in SIZE_FIELDS if name not in config_dict]
        if missing:
            raise ValueError(f"config.json of this awd_lstm model lacks {missing}: the weights' sizes are unknown")
        id2label = config_dict.get("id2label")
        if id2label is not None and not (
            isinstance(id2label, dict) and all(str(key).strip().isdigit() for key in id2label)
        ):
            raise ValueError(
                "config.json of this awd_lstm model is invalid: AwdLstmConfig.id2label must map the class ids "
                f'("0", "1", ...) to names, got {str(id2label)[:200]}'
            )
        try:
            return super().from_dict(config_dict, **kwargs)
        except (TypeError, ValueError) as error:
            raise type(error)(f"config.json of this awd_lstm model is invalid: {error}") from error
        except StrictDataclassError as error:  # transformers' own field validators
            raise ValueError(f"config.json of this awd_lstm model is invalid: {error}") from error

    @property
    def layer_sizes(self) -> list[tuple[int, int]]:
        """`(input_size, hidden_size)` of each LSTM layer; the last layer outputs `embedding_size`."""
        n = self.num_hidden_layers
        inputs = [self.embedding_size] + [self.hidden_size] * (n - 1)
        outputs = [self.hidden_size] * (n - 1) + [self.embedding_size]
        return list(zip(inputs, outputs))

    def scale_dropouts(self, drop_mult: float) -> AwdLstmConfig:
        """Multiply the five AWD-LSTM dropouts by `drop_mult` in place (fastai's `drop_mult`); returns self."""
        for name in _DROPOUT_NAMES:
            setattr(self, name, getattr(self, name) * drop_mult)
        self.validate_awd_lstm()
        return self

    @classmethod
    def _fastai_preset(cls, dropouts: dict[str, float], drop_mult: float, kwargs: dict) -> AwdLstmConfig:
        """fastai's dropouts times `drop_mult`; dropouts passed explicitly in `kwargs` are taken as they are."""
        given = {name: kwargs.pop(name) for name in _DROPOUT_NAMES if name in kwargs}
        scaled = {name: p * drop_mult for name, p in dropouts.items()}
        return cls(**{**scaled, **given, **kwargs})

    @classmethod
    def for_language_model(cls, drop_mult: float = 1.0, **kwargs) -> AwdLstmConfig:
        """fastai's `language_model_learner` defaults: `awd_lstm_lm_config` dropouts times `drop_mult` (1.0)."""
        return cls._fastai_preset(FASTAI_LM_DROPOUTS, drop_mult, kwargs)

    @classmethod
    def for_classification(cls, drop_mult: float = 0.5, **kwargs) -> AwdLstmConfig:
        """fastai's `text_classifier_learner` defaults: `awd_lstm_clas_config` dropouts times `drop_mult` (0.5).

        With the default this gives embedding 0.025, weight 0.25, input 0.2, hidden 0.15 and head dropouts
        `[0.2, 0.1]` (the first is `output_dropout`, the others `classifier_dropouts`, which fastai does not
        scale). Any other keyword (sizes, `num_labels`, `id2label`, ...) goes to the constructor, and a dropout
        given explicitly is taken as it is, unscaled.
        """
        return cls._fastai_preset(FASTAI_CLASSIFIER_DROPOUTS, drop_mult, kwargs)


__all__ = ["AwdLstmConfig"]
