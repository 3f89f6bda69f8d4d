"""A small byte-level BPE tokenizer with Qwen's chat and vision special tokens, built offline.

Real DepthVLM folders carry their own (Qwen) tokenizer. Test models and the embedded model use
this one: trained in a second from a corpus of spatial prompts and numbers, so the embedding
table stays small. Digits are split one by one, as in Qwen, so numbers are spelled digit-wise.
"""

from __future__ import annotations

import random

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

__all__ = ["SPECIAL_TOKENS", "CHAT_TEMPLATE", "build_tokenizer"]

#: Special tokens in Qwen's order; their ids follow the learned vocabulary.
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
                  "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")

#: ChatML as used by Qwen3-VL (images expand to vision_start, image_pad..., vision_end).
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% else %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_WORDS = (
    "how far is the point at pixel from camera in metres meters depth distance which of two "
    "points is nearer closer farther further away between region mean median object wall floor "
    "ceiling table box shelf car building pole road ground sky left right top bottom center "
    "estimate metric every given this image rounded to decimal places answer the approximately "
    "about what are you a helpful assistant system user point marked red blue green A B and m "
    "3d apart distances numbers is are it there here object's surface person door window chair"
).split()


def _corpus(n_lines: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for _ in range(n_lines):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(3, 14))]
        num = f"{rng.uniform(0, 90):.2f}"
        pix = f"({rng.randint(0, 2000)}, {rng.randint(0, 2000)})"
        lines.append(" ".join(words) + f" {pix} {num} m. " + " ".join(w.capitalize() for w in words[:2]) + "?")
    return lines


def build_tokenizer(vocab_size: int = 512, seed: int = 0) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE of ``vocab_size`` learned tokens plus the special tokens.

    Deterministic for a given ``seed``. Returns a ``PreTrainedTokenizerFast`` with the chat
    template, ``<|im_end|>`` as EOS and ``<|endoftext|>`` as padding, ready to ``save_pretrained``.
    """
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[])
    tok.train_from_iterator(_corpus(3000, seed), trainer=trainer)
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", clean_up_tokenization_spaces=False)
    fast.chat_template = CHAT_TEMPLATE
    return fast
