"""PyTorch AWD-LSTM (ULMFiT): the encoder, its causal language model, and the BPT3C document classifier.

Reading guide:
- the regularisers are small functions (`locked_dropout`, `embed_with_dropout`, and for DropConnect `keep_mask` +
  `drop_connect`, drawn by `AwdLstmLayer.recurrent_mask`); none of them keeps a derived tensor on the module, so
  `copy.deepcopy` and `state_dict` are plain;
- `AwdLstmModel` embeds and runs the stacked layers, with or without padding (`attention_mask`);
- `AwdLstmForCausalLM` adds the tied decoder and the recurrent state (`AwdLstmCache`) that generation carries;
- `AwdLstmForSequenceClassification` implements BPT3C in `encode_documents`: a plan (`bpt3c_plan.plan_chunks`) read
  by BPT3C's loop (`bpt3c_plan.run_plan`): each document in `bptt`-token chunks from its own first token, the state
  carried and detached at every boundary, chunks before the last `max_len` tokens without autograd, the kept
  chunks concat-pooled chunk by chunk.

Beside this file (relative imports, so that `save_pretrained` ships them as remote code): `lstm_kernels` (one
layer over a chunk, behind `lstm_forward`), `bpt3c_plan`, `validation` (inputs and labels), `saving` (atomic
saves, load errors, model card hooks) and `hardware` (where bfloat16 is native).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.utils import ModelOutput
from transformers.utils.generic import can_return_tuple

from .bpt3c_plan import Chunk, ConcatPool, LstmState, justify_order, plan_chunks, run_plan, shift_right
from .configuration_awd_lstm import AwdLstmConfig
from .hardware import bf16_is_native, float32_forward_where_bf16_is_emulated
from .lstm_kernels import LstmWeights, drop_connect, keep_mask, lstm_forward
from .saving import CheckedFilesMixin
from .validation import checked_inputs, checked_labels, checked_state, justified_documents

# ----------------------------------------------------------------------------------------------------------------
# Regularisers (AWD-LSTM, Merity et al. 2017), each a function of its input and a probability.
# ----------------------------------------------------------------------------------------------------------------


def locked_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Variational dropout: one mask per sequence and feature, shared by all time steps.

    x: `(batch, seq, features)` -> same shape, scaled by `1/(1-p)` where kept.
    """
    if not training or p == 0.0:
        return x
    mask = x.new_empty(x.size(0), 1, x.size(2)).bernoulli_(1 - p).div_(1 - p)  # (batch, 1, features)
    return x * mask


def embed_with_dropout(
    input_ids: torch.Tensor, weight: torch.Tensor, p: float, training: bool, padding_idx: int | None
) -> torch.Tensor:
    """Embedding lookup that drops whole vocabulary rows (a word is dropped everywhere in the call).

    input_ids: `(batch, seq)` -> `(batch, seq, embedding_size)`. Equivalent to fastai's `EmbeddingDropout`
    (mask the weight's rows, then look up) but masks only the looked-up rows.
    """
    embeds = F.embedding(input_ids, weight, padding_idx)
    if not training or p == 0.0:
        return embeds
    row_mask = weight.new_empty(weight.size(0), 1).bernoulli_(1 - p).div_(1 - p)  # (vocab, 1)
    return embeds * F.embedding(input_ids, row_mask)  # (batch, seq, 1) broadcast


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Eval mode for the duration; every module's flag restored afterwards."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


# ----------------------------------------------------------------------------------------------------------------
# Recurrent state and outputs
# ----------------------------------------------------------------------------------------------------------------


class AwdLstmCache(tuple):
    """The recurrent state: a tuple with one `(h, c)` pair per layer, each `(batch, layer_size)`, as the models
    return it. It is also what `generate` carries from step to step (the `cache` output, transformers >= 5.24;
    `state` before) and reorders for beam search (`reorder_cache`, the method transformers calls on a cache).
    Any tuple of `(h, c)` pairs is accepted as input."""

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Beam search: keep the state of the chosen beams, in place (rows `beam_idx` of every `h` and `c`)."""
        for pair in self:
            for t in pair:
                t.copy_(t.index_select(0, beam_idx.to(t.device)))


@dataclass
class AwdLstmOutput(ModelOutput):
    """Output of [`AwdLstmModel`].

    Args:
        last_hidden_state: `(batch, seq, embedding_size)` output of the last LSTM layer (zero at padding).
        state: per layer `(h, c)`, each `(batch, layer_size)` (an `AwdLstmCache`): the state after each row's last
            real token. Pass it back as `state=` to continue the stream. Returned when `use_cache` is on.
        hidden_states: the output of every layer, each `(batch, seq, layer_size)`, before inter-layer dropout.
    """

    last_hidden_state: torch.Tensor | None = None
    state: AwdLstmCache | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


@dataclass
class AwdLstmCausalLMOutput(ModelOutput):
    """Output of [`AwdLstmForCausalLM`].

    Args:
        loss: next-token cross-entropy when `labels` are given.
        logits: `(batch, seq, vocab_size)`.
        state: as in [`AwdLstmOutput`].
        hidden_states: as in [`AwdLstmOutput`].
        last_hidden_state: `(batch, seq, embedding_size)`, the raw last-layer output (fastai's TAR input).
        dropped_hidden_state: the same after output dropout, what the decoder saw (fastai's AR input).
        cache: `state` again, under the name `generate` carries from step to step (transformers >= 5.24).
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    state: AwdLstmCache | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    last_hidden_state: torch.Tensor | None = None
    dropped_hidden_state: torch.Tensor | None = None
    cache: AwdLstmCache | None = None


# ----------------------------------------------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------------------------------------------


class AwdLstmLayer(nn.Module):
    """One LSTM layer with DropConnect on its hidden-to-hidden weight.

    The parameters are those of a one-layer `nn.LSTM` (gate order i, f, g, o). The dropped recurrent weight is
    computed inside the forward and handed to `torch.lstm`; nothing derived is stored on the module.
    """

    def __init__(self, input_size: int, hidden_size: int, weight_dropout: float):
        super().__init__()
        self.input_size, self.hidden_size, self.weight_dropout = input_size, hidden_size, weight_dropout
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(4 * hidden_size))
        self.bias_hh = nn.Parameter(torch.empty(4 * hidden_size))

    def recurrent_mask(self) -> torch.Tensor | None:
        """A fresh DropConnect draw: bool `(4*hidden, hidden)`, True where `weight_hh` is kept (training), or None
        (eval, or `weight_dropout` 0). `keep_mask` draws it: p is resolved to 1/65536."""
        if not self.training or self.weight_dropout == 0.0:
            return None
        return keep_mask(self.weight_hh, self.weight_dropout)

    def recurrent_weight(self, keep: torch.Tensor | None = None) -> torch.Tensor:
        """The hidden-to-hidden weight under DropConnect mask `keep` (default: a fresh `recurrent_mask()`):
        `F.dropout(weight_hh, p)`'s values (zeroed where dropped, kept ones scaled by 1/(1-p)). Autograd keeps the
        bool mask (1 byte per weight, not a 4-byte float one): BPT3C keeps one per layer for every kept chunk."""
        keep = self.recurrent_mask() if keep is None else keep
        return drop_connect(self.weight_hh, keep, self.weight_dropout)

    def weights(self, keep: torch.Tensor | None = None) -> list[torch.Tensor]:
        return [self.weight_ih, self.recurrent_weight(keep), self.bias_ih, self.bias_hh]

    def kernel_weights(self) -> LstmWeights:
        """What `lstm_forward` computes with: `(weight_ih, weight_hh, bias_ih, bias_hh)`."""
        return (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)

    def forward(
        self,
        x: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor],
        keep: torch.Tensor | None = None,
        compute_dtype: torch.dtype | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """x: `(batch, seq, input_size)`, state `(h, c)` each `(batch, hidden_size)`.

        Returns the output `(batch, seq, hidden_size)` and the final `(h, c)`. `keep` (a `recurrent_mask()`) lets
        a caller draw the masks of several layers up front (`AwdLstmModel.recurrent_masks`); by default each
        call draws its own. `compute_dtype=torch.bfloat16` (or a bfloat16 autocast, CPU or CUDA) runs the matrix
        products in bfloat16 (see `AwdLstmConfig.compute_dtype`).
        """
        keep = self.recurrent_mask() if keep is None else keep
        weights = self.kernel_weights()
        return lstm_forward(x, state, weights, keep, self.weight_dropout, self.training, compute_dtype)

    def forward_packed(
        self,
        data: torch.Tensor,
        batch_sizes: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor],
        keep: torch.Tensor | None = None,
        compute_dtype: torch.dtype | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """The same on a packed sequence: `data` `(total_tokens, input_size)` in `PackedSequence` order
        (`compute_dtype`: the LSTM runs in that dtype)."""
        keep = self.recurrent_mask() if keep is None else keep
        weights = self.kernel_weights()
        return lstm_forward(data, state, weights, keep, self.weight_dropout, self.training, compute_dtype, batch_sizes)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, weight_dropout={self.weight_dropout}"


class AwdLstmHeadBlock(nn.Module):
    """fastai's `LinBnDrop`: BatchNorm1d -> Dropout -> Linear (no bias, BatchNorm precedes it) -> optional ReLU."""

    def __init__(self, in_features: int, out_features: int, dropout: float, relu: bool):
        super().__init__()
        self.batch_norm = nn.BatchNorm1d(in_features)
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(in_features, out_features, bias=False)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: `(batch, in_features)` -> `(batch, out_features)`."""
        x = self.linear(self.dropout(self.batch_norm(x)))
        return F.relu(x) if self.relu else x


class AwdLstmClassificationHead(nn.Module):
    """fastai's `PoolingLinearClassifier` after the pooling: blocks `[3*emb] + classifier_hidden_sizes + [labels]`."""

    def __init__(self, config: AwdLstmConfig):
        super().__init__()
        sizes = [3 * config.embedding_size, *config.classifier_hidden_sizes, config.num_labels]
        dropouts = [config.output_dropout, *config.classifier_dropouts]
        n_blocks = len(sizes) - 1
        self.blocks = nn.ModuleList(
            AwdLstmHeadBlock(sizes[k], sizes[k + 1], dropouts[k], relu=k < n_blocks - 1) for k in range(n_blocks)
        )

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """pooled: `(batch, 3*embedding_size)` -> logits `(batch, num_labels)`."""
        for block in self.blocks:
            pooled = block(pooled)
        return pooled


# ----------------------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------------------


class AwdLstmPreTrainedModel(CheckedFilesMixin, PreTrainedModel):
    """Weight initialisation (fastai's) and the settings shared by every AWD-LSTM head."""

    config_class = AwdLstmConfig
    config: AwdLstmConfig
    base_model_prefix = "awd_lstm"
    main_input_name = "input_ids"
    _no_split_modules = ["AwdLstmLayer"]
    _is_stateful = True
    supports_gradient_checkpointing = False

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """fastai: embedding U(-0.1, 0.1) (pad row included), LSTM weights U(-1/sqrt(h), 1/sqrt(h)) as PyTorch,
        decoder bias 0, head Linear as PyTorch's default, BatchNorm (1, 0)."""
        if isinstance(module, nn.Embedding):
            init.uniform_(module.weight, -self.config.initializer_range, self.config.initializer_range)
        elif isinstance(module, AwdLstmLayer):
            bound = 1.0 / math.sqrt(module.hidden_size)
            for weight in (module.weight_ih, module.weight_hh, module.bias_ih, module.bias_hh):
                init.uniform_(weight, -bound, bound)
        elif isinstance(module, nn.Linear):
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm1d):
            init.ones_(module.weight)
            init.zeros_(module.bias)
            init.zeros_(module.running_mean)
            init.ones_(module.running_var)
            init.zeros_(module.num_batches_tracked)

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        return False  # the recurrent state travels as `state`, not as a key/value cache


class AwdLstmModel(AwdLstmPreTrainedModel):
    """The AWD-LSTM encoder: embedding (with whole-word dropout) -> stacked LSTMs with DropConnect and
    variational dropout between layers. Returns the last layer's output and the recurrent state."""

    _keys_to_ignore_on_load_unexpected = [r"decoder\.", r"classifier\."]

    def __init__(self, config: AwdLstmConfig):
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id)
        self.layers = nn.ModuleList(
            AwdLstmLayer(n_in, n_out, config.weight_dropout) for n_in, n_out in config.layer_sizes
        )
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings = value

    # -- building blocks, also used chunk by chunk by the BPT3C classifier -------------------------------------

    def initial_state(self, batch_size: int, like: torch.Tensor) -> LstmState:
        """Zero `(h, c)` per layer, each `(batch_size, layer_size)`, with `like`'s device and dtype."""
        return tuple(
            (like.new_zeros(batch_size, layer.hidden_size), like.new_zeros(batch_size, layer.hidden_size))
            for layer in self.layers
        )

    def embed(self, input_ids: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """`(batch, seq)` ids or `(batch, seq, emb)` embeddings -> `(batch, seq, emb)` with embedding dropout
        (ids only, as fastai's `from_embeds`) and input dropout."""
        if inputs_embeds is None:
            inputs_embeds = embed_with_dropout(
                input_ids,
                self.embeddings.weight,
                self.config.embedding_dropout,
                self.training,
                self.embeddings.padding_idx,
            )
        return locked_dropout(inputs_embeds, self.config.input_dropout, self.training)

    def lstm_compute_dtype(self) -> torch.dtype | None:
        """`torch.bfloat16` when `config.compute_dtype` asks for bfloat16 LSTM products (`"bfloat16"`, or `"auto"`
        where this device multiplies bfloat16 natively), else None (as the weights)."""
        requested = self.config.compute_dtype
        if requested == "bfloat16" or (requested == "auto" and bf16_is_native(self.device)):
            return torch.bfloat16
        return None

    def recurrent_masks(self) -> list[torch.Tensor | None]:
        """One DropConnect draw for every layer (`AwdLstmLayer.recurrent_mask`; None entries in eval)."""
        return [layer.recurrent_mask() for layer in self.layers]

    def run_layers(self, x: torch.Tensor, state: LstmState) -> tuple[torch.Tensor, LstmState, tuple[torch.Tensor, ...]]:
        """Run the stacked layers on unpadded input (one DropConnect draw per layer for the call).

        x: `(batch, seq, emb)` -> output `(batch, seq, emb)`, new state, and every layer's output.
        """
        keep_masks = self.recurrent_masks()
        compute_dtype = self.lstm_compute_dtype()
        new_state, layer_outputs = [], []
        for i, layer in enumerate(self.layers):
            x, layer_state = layer(x, state[i], keep_masks[i], compute_dtype)
            new_state.append(layer_state)
            layer_outputs.append(x)
            if i < len(self.layers) - 1:
                x = locked_dropout(x, self.config.hidden_dropout, self.training)
        return x, tuple(new_state), tuple(layer_outputs)

    def run_layers_masked(
        self, x: torch.Tensor, mask: torch.Tensor, state: LstmState
    ) -> tuple[torch.Tensor, LstmState, tuple[torch.Tensor, ...]]:
        """Run the layers on padded input, skipping padding (left or right), each row exactly as if alone.

        x: `(batch, seq, emb)`, mask: bool `(batch, seq)`. Outputs are zero at padding; each row's state is the
        one after its last real token (unchanged for a row with no token).
        """
        batch, seq, _ = x.shape
        lengths = mask.sum(dim=1)  # (batch,)
        rows = lengths.nonzero().squeeze(1)  # rows with at least one token
        if rows.numel() == 0:
            zeros = x.new_zeros(batch, seq, self.config.embedding_size)
            return zeros, state, tuple(x.new_zeros(batch, seq, layer.hidden_size) for layer in self.layers)
        order = justify_order(mask)  # (batch, seq), computed once for packing and for every layer's unpacking
        justified = x.gather(1, order.unsqueeze(-1).expand_as(x))
        packed = nn.utils.rnn.pack_padded_sequence(
            justified[rows], lengths[rows].cpu(), batch_first=True, enforce_sorted=False
        )
        data, batch_sizes = packed.data, packed.batch_sizes
        # the (sorted) row of every packed element: time step t holds rows 0..batch_sizes[t]-1
        steps = batch_sizes.to(x.device)
        element_rows = torch.arange(int(steps.sum()), device=x.device) - torch.repeat_interleave(
            steps.cumsum(0) - steps, steps
        )
        to_sorted, to_original = packed.sorted_indices, packed.unsorted_indices
        keep_masks = self.recurrent_masks()
        compute_dtype = self.lstm_compute_dtype()
        new_state, layer_outputs = [], []
        for i, layer in enumerate(self.layers):
            h0, c0 = (s[rows][to_sorted] for s in state[i])
            data, (h, c) = layer.forward_packed(data, batch_sizes, (h0, c0), keep_masks[i], compute_dtype)
            h_all, c_all = state[i][0].clone(), state[i][1].clone()
            h_all[rows], c_all[rows] = h[to_original], c[to_original]
            new_state.append((h_all, c_all))
            layer_outputs.append(self._unpack(data, packed, rows, order))
            if i < len(self.layers) - 1 and self.training and self.config.hidden_dropout > 0:
                p = self.config.hidden_dropout
                row_masks = data.new_empty(len(rows), data.size(1)).bernoulli_(1 - p).div_(1 - p)
                data = data * row_masks[element_rows]
        return layer_outputs[-1], tuple(new_state), tuple(layer_outputs)

    @staticmethod
    def _unpack(
        data: torch.Tensor, packed: nn.utils.rnn.PackedSequence, rows: torch.Tensor, order: torch.Tensor
    ) -> torch.Tensor:
        """Packed layer output -> `(batch, seq, features)` at the original (possibly left-padded) positions;
        `order` is the `justify_order` the input was packed with."""
        batch, seq = order.shape
        justified, _ = nn.utils.rnn.pad_packed_sequence(
            packed._replace(data=data), batch_first=True, total_length=seq
        )  # (n_rows, seq, feat), tokens first
        full = data.new_zeros(batch, seq, data.size(1))
        full[rows] = justified
        # justified position k of a row holds its k-th token: scatter it back to where that token was
        return torch.zeros_like(full).scatter_(1, order.unsqueeze(-1).expand_as(full), full)

    @can_return_tuple
    @float32_forward_where_bf16_is_emulated
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        state: LstmState | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        **kwargs,
    ) -> AwdLstmOutput:
        """Encode a batch left to right.

        Args:
            input_ids: `(batch, seq)` token ids (or give `inputs_embeds` `(batch, seq, embedding_size)`).
            attention_mask: `(batch, seq)`, 1 for tokens and 0 for padding (left or right). Padding is skipped:
                every row's outputs and state are those it would get alone. May be longer than the input, then
                its last `seq` columns apply (as in generation).
            state: per layer `(h, c)` to start from (zeros if None), e.g. the `state` of a previous call.
            use_cache: return the final `state` (default: `config.use_cache` in eval mode, off in training).
            output_hidden_states: also return every layer's output.
        """
        tokens, mask = checked_inputs(self.config, input_ids, inputs_embeds, attention_mask, allow_longer_mask=True)
        batch = tokens.size(0)
        x = self.embed(input_ids, inputs_embeds)  # (batch, seq, emb)
        state = (
            self.initial_state(batch, x)
            if state is None
            else checked_state(state, [layer.hidden_size for layer in self.layers], batch)
        )
        if mask is None:
            output, new_state, layer_outputs = self.run_layers(x, state)
        else:
            output, new_state, layer_outputs = self.run_layers_masked(x, mask, state)
        if use_cache is None:
            use_cache = self.config.use_cache and not self.training
        return AwdLstmOutput(
            last_hidden_state=output,
            state=AwdLstmCache(new_state) if use_cache else None,
            hidden_states=layer_outputs if output_hidden_states else None,
        )

    def read_documents(
        self, tokens: torch.Tensor, lengths: torch.Tensor, max_len: int, grad: bool, pooling: str = "window"
    ) -> torch.Tensor:
        """BPT3C's reading: left-justified documents `tokens` (`(batch, seq)` ids or `(batch, seq, emb)` embeddings)
        of `lengths` `(batch,)`, read in `bptt`-token chunks from each one's own first token, the state carried and
        detached at every boundary; returns the concat pooling `(batch, 3*embedding_size)` = [output at the last
        token, max, mean] over the chunks that begin in the last `max_len` tokens (`pooling="window"`) or over
        every token (`"document"`). grad: the chunks in the last `max_len` tokens run with autograd (the earlier
        ones never do)."""
        plan = plan_chunks(lengths, self.config.bptt, max_len, grad, self.training, pooling)
        tokens = shift_right(tokens[plan.order], plan.first, plan.lengths)  # longest first, aligned as planned
        is_embeds = tokens.is_floating_point()
        like = tokens if is_embeds else self.embeddings.weight

        def step(chunk: Chunk, chunk_tokens: torch.Tensor, state: LstmState) -> tuple[torch.Tensor, LstmState]:
            x = self.embed(inputs_embeds=chunk_tokens) if is_embeds else self.embed(input_ids=chunk_tokens)
            out, new_state, _ = self.run_layers(x, state)  # (rows, chunk, emb)
            return out, new_state

        state = self.initial_state(tokens.size(0), like)
        pool = ConcatPool(tokens.size(0), self.config.embedding_size, like)
        return run_plan(plan, tokens, state, step, pool)  # back in the caller's row order

    def document_embeddings(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One vector per document, `(batch, 3*embedding_size)`: the concat pooling [output at the last token, max,
        mean] of the last layer over the whole document (reversed for a backward model), read in `bptt` chunks so
        that memory stays bounded at any length. Eval mode, no autograd; each document gets the same vector
        whatever its batch and padding side (without a mask, `pad_token_id` marks padding)."""
        tokens, lengths = justified_documents(self.config, input_ids, attention_mask, inputs_embeds)
        with torch.no_grad(), eval_mode(self):
            return self.read_documents(tokens, lengths, int(lengths.max()), grad=False)


class AwdLstmForCausalLM(AwdLstmPreTrainedModel, GenerationMixin):
    """AWD-LSTM language model: the encoder, output dropout and a decoder tied to the embedding (with its own
    bias). Carries the recurrent state so a stream can be continued and `generate` runs one token per step."""

    _tied_weights_keys = {"decoder.weight": "awd_lstm.embeddings.weight"}
    _keys_to_ignore_on_load_unexpected = [r"classifier\."]

    def __init__(self, config: AwdLstmConfig):
        super().__init__(config)
        self.awd_lstm = AwdLstmModel(config)
        self.decoder = nn.Linear(config.embedding_size, config.vocab_size, bias=True)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.decoder

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.decoder = new_embeddings

    @can_return_tuple
    @float32_forward_where_bf16_is_emulated
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        state: LstmState | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_hidden_states: bool | None = None,
        logits_to_keep: int = 0,
        cache: LstmState | None = None,
        **kwargs,
    ) -> AwdLstmCausalLMOutput:
        """Next-token logits for `(batch, seq)` ids.

        Args:
            labels: `(batch, seq)`, usually `input_ids`; positions set to -100 are ignored. The loss is the
                mean next-token cross-entropy (labels are shifted inside).
            state: the `state` of the previous call to continue a stream (see [`AwdLstmModel.forward`]).
            logits_to_keep: if > 0, compute logits for the last `logits_to_keep` positions only.
            cache: the same as `state`, under the name `generate` passes it (transformers >= 5.24).
        Other arguments as in [`AwdLstmModel.forward`].
        """
        if cache is not None:
            if state is not None and state is not cache:
                raise ValueError("give the recurrent state as state= or as cache=, not both")
            state = cache
        outputs = self.awd_lstm(
            input_ids=input_ids,
            attention_mask=attention_mask,
            state=state,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            output_hidden_states=output_hidden_states,
        )
        hidden = outputs.last_hidden_state  # (batch, seq, emb)
        dropped = locked_dropout(hidden, self.config.output_dropout, self.training)
        logits = self.decoder(dropped[:, -logits_to_keep:] if logits_to_keep else dropped)
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)
        _raise_if_nonfinite(self.config, loss, logits)
        return AwdLstmCausalLMOutput(
            loss=loss,
            logits=logits,
            state=outputs.state,
            hidden_states=outputs.hidden_states,
            last_hidden_state=hidden,
            dropped_hidden_state=dropped,
            cache=outputs.state,
        )


def _raise_if_nonfinite(config: AwdLstmConfig, loss: torch.Tensor | None, logits: torch.Tensor) -> None:
    if not config.raise_on_nonfinite:
        return
    for name, value in (("loss", loss), ("logits", logits)):
        if value is not None and not bool(torch.isfinite(value).all()):
            raise FloatingPointError(f"the {name} is not finite (config.raise_on_nonfinite=True)")


class AwdLstmForSequenceClassification(AwdLstmPreTrainedModel):
    """BPT3C document classifier (ULMFiT): the AWD-LSTM encoder reads each whole document in `bptt` chunks,
    concat-pools the outputs of the chunks in its last `max_len` tokens, and fastai's head classifies them.

    Single-label, multi-label and regression follow `config.problem_type` as in every transformers model.
    """

    accepts_loss_kwargs = False  # Trainer must average over gradient-accumulation steps itself
    _keys_to_ignore_on_load_unexpected = [r"decoder\."]

    def __init__(self, config: AwdLstmConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.awd_lstm = AwdLstmModel(config)
        self.classifier = AwdLstmClassificationHead(config)
        self.post_init()

    @can_return_tuple
    @float32_forward_where_bf16_is_emulated
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        """Classify documents of any length.

        Args:
            input_ids: `(batch, seq)` token ids, padded left or right (or `inputs_embeds` `(batch, seq, emb)`).
            attention_mask: `(batch, seq)`, 1 for tokens, 0 for padding. If omitted, positions holding
                `config.pad_token_id` are padding (fastai's convention). Each row is classified exactly as if it
                were alone, whatever its padding or position in the batch.
            labels: `(batch,)` class ids (single-label), `(batch, num_labels)` floats (multi-label) or
                `(batch,)`/`(batch, 1)` floats (regression, `num_labels == 1`).
        Returns:
            `SequenceClassifierOutput` with `logits` `(batch, num_labels)` and `loss` when labels are given.
        """
        pooled = self.encode_documents(input_ids, attention_mask, inputs_embeds)  # (batch, 3*emb)
        logits = self.classifier(pooled)
        loss = None
        if labels is not None:
            labels = checked_labels(labels, logits.size(0), self.config)
            loss = self.loss_function(labels=labels, pooled_logits=logits, config=self.config)
        _raise_if_nonfinite(self.config, loss, logits)
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def encode_documents(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """BPT3C: read each document in `bptt`-token chunks from its own first token and return its concat-pooled
        features `(batch, 3*embedding_size)` = [output at the last token, max, mean over the pooled tokens: the kept
        window, or the whole document with `config.classifier_pooling="document"`].

        The state is carried from chunk to chunk and detached at every boundary; chunks that begin before the
        document's last `max_len` tokens only warm up the state (and, pooling the document, add to the pooling)
        and run without autograd.
        """
        tokens, lengths = self._justified_documents(input_ids, attention_mask, inputs_embeds)
        needs_grad = torch.is_grad_enabled() and (
            any(p.requires_grad for p in self.parameters()) or (tokens.is_floating_point() and tokens.requires_grad)
        )
        config = self.config
        return self.awd_lstm.read_documents(tokens, lengths, config.max_len, needs_grad, config.classifier_pooling)

    def document_embeddings(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The features the head sees, `(batch, 3*embedding_size)`: `encode_documents` in eval mode, no autograd."""
        with torch.no_grad(), eval_mode(self):
            return self.encode_documents(input_ids, attention_mask, inputs_embeds)

    def _justified_documents(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        inputs_embeds: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return justified_documents(self.config, input_ids, attention_mask, inputs_embeds)


__all__ = [
    "AwdLstmCache",
    "AwdLstmPreTrainedModel",
    "AwdLstmModel",
    "AwdLstmForCausalLM",
    "AwdLstmForSequenceClassification",
    "AwdLstmOutput",
    "AwdLstmCausalLMOutput",
]
