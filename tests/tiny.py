"""Tiny random encoders + tokenizers built in-process, so tests never download anything.

`make_tiny_backbone` writes a Hugging Face encoder directory (config.json, model.safetensors,
tokenizer.json, tokenizer_config.json) that `AutoModel.from_pretrained` and
`AutoTokenizer.from_pretrained` load offline. The tokenizer mimics XLM-R / multilingual-e5:
specials `<s>`=0 `<pad>`=1 `</s>`=2 `<unk>`=3 `<mask>`=4, Metaspace pre-tokenizer, Unigram model,
pair template `<s> A </s> </s> B </s>`. `make_tiny_checkpoint` saves an XMixupModel on top of it
for export and service tests.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# A small multilingual corpus: enough scripts (Latin, CJK, Thai, Arabic, Devanagari, Cyrillic)
# that every test language tokenises into real pieces rather than <unk>.
_SENTENCES = [
    "The cat sits on the mat and looks out of the window.",
    "A man is playing a guitar in the park.",
    "Two dogs are running across the green field.",
    "The weather is very nice today, isn't it?",
    "I would like to book a flight to Berlin next week.",
    "Where is the nearest train station?",
    "She reads a book every evening before going to sleep.",
    "The company announced record profits this quarter.",
    "Please turn off the lights when you leave the room.",
    "The river flows slowly through the old town.",
    "Barack Obama visited Paris in June.",
    "Angela Merkel met the president of France in Berlin.",
    "What time does the museum open on Sunday?",
    "The children are playing football in the garden.",
    "He does not like coffee, but he drinks tea every morning.",
    "Die Katze sitzt auf der Matte und schaut aus dem Fenster.",
    "Ein Mann spielt Gitarre im Park.",
    "Zwei Hunde laufen über die grüne Wiese.",
    "Das Wetter ist heute sehr schön, nicht wahr?",
    "Ich möchte nächste Woche einen Flug nach Berlin buchen.",
    "Wo ist der nächste Bahnhof?",
    "Sie liest jeden Abend ein Buch, bevor sie schlafen geht.",
    "Die Firma meldete in diesem Quartal Rekordgewinne.",
    "Bitte schalte das Licht aus, wenn du den Raum verlässt.",
    "Der Fluss fließt langsam durch die Altstadt.",
    "猫坐在垫子上，看着窗外。",
    "一个男人在公园里弹吉他。",
    "两只狗在绿色的田野上奔跑。",
    "今天天气很好，不是吗？",
    "我想订下周去柏林的机票。",
    "最近的火车站在哪里？",
    "她每天晚上睡觉前都读一本书。",
    "公司宣布本季度利润创历史新高。",
    "离开房间时请关灯。",
    "河水缓缓流过古城。",
    "แมวนั่งอยู่บนเสื่อและมองออกไปนอกหน้าต่าง",
    "ผู้ชายคนหนึ่งกำลังเล่นกีตาร์ในสวนสาธารณะ",
    "สุนัขสองตัววิ่งข้ามทุ่งหญ้าสีเขียว",
    "วันนี้อากาศดีมาก ใช่ไหม",
    "ฉันอยากจองเที่ยวบินไปเบอร์ลินสัปดาห์หน้า",
    "สถานีรถไฟที่ใกล้ที่สุดอยู่ที่ไหน",
    "เธออ่านหนังสือทุกเย็นก่อนนอน",
    "บริษัทประกาศผลกำไรสูงสุดในไตรมาสนี้",
    "القطة تجلس على السجادة وتنظر من النافذة.",
    "رجل يعزف على الغيتار في الحديقة.",
    "كلبان يركضان عبر الحقل الأخضر.",
    "الطقس جميل جدا اليوم، أليس كذلك؟",
    "أود أن أحجز رحلة إلى برلين الأسبوع المقبل.",
    "أين أقرب محطة قطار؟",
    "تقرأ كتابا كل مساء قبل النوم.",
    "أعلنت الشركة عن أرباح قياسية هذا الربع.",
    "बिल्ली चटाई पर बैठी है और खिड़की से बाहर देख रही है।",
    "एक आदमी पार्क में गिटार बजा रहा है।",
    "आज मौसम बहुत अच्छा है।",
    "निकटतम रेलवे स्टेशन कहाँ है?",
    "Кошка сидит на коврике и смотрит в окно.",
    "Мужчина играет на гитаре в парке.",
    "Погода сегодня очень хорошая.",
    "Kedi paspasın üzerinde oturuyor ve pencereden dışarı bakıyor.",
    "Bir adam parkta gitar çalıyor.",
    "Bugün hava çok güzel, değil mi?",
    "El gato está sentado en la alfombra y mira por la ventana.",
    "Un hombre toca la guitarra en el parque.",
    "Le chat est assis sur le tapis et regarde par la fenêtre.",
    "Un homme joue de la guitare dans le parc.",
    "Con mèo ngồi trên tấm thảm và nhìn ra ngoài cửa sổ.",
    "Một người đàn ông đang chơi guitar trong công viên.",
    "猫はマットの上に座って窓の外を見ています。",
    "고양이가 매트 위에 앉아 창밖을 보고 있다.",
    "query: passage: 0 1 2 3 4 5 6 7 8 9 10 100 2024 3.14 - , . ! ? ( ) \" '",
]

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
PAD_ID = 1


def corpus() -> list[str]:
    """A few hundred sentences: the base set plus deterministic pairings of them."""
    out = list(_SENTENCES)
    n = len(_SENTENCES)
    for i in range(n):
        out.append(_SENTENCES[i] + " " + _SENTENCES[(i * 7 + 3) % n])
        out.append(_SENTENCES[(i * 11 + 5) % n].lower())
    return out


def make_tiny_tokenizer(out_dir: str | Path, vocab_size: int = 600) -> Any:
    """Train a Unigram fast tokenizer and save tokenizer.json + tokenizer_config.json to out_dir.

    Returns the `tokenizers.Tokenizer`. Training is deterministic for a fixed corpus.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers.trainers import UnigramTrainer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = UnigramTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        unk_token="<unk>",
        max_piece_length=8,
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    # The trainer puts special tokens first in the given order; the whole stack relies on it.
    assert [ids[t] for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4], ids
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)],
    )
    tok.save(str(out / "tokenizer.json"))
    tok_cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "cls_token": "<s>",
        "sep_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "mask_token": "<mask>",
        "model_max_length": 512,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=2) + "\n")
    return tok


def make_tiny_backbone(
    out_dir: str | Path,
    arch: str = "bert",
    num_layers: int = 4,
    hidden: int = 32,
    heads: int = 4,
    seed: int = 0,
) -> Path:
    """Write a tiny random HF encoder (no pooler) + tokenizer to out_dir and return the path.

    arch "bert": BertModel, position ids from 0 (like the converted multilingual-e5 backbone).
    arch "xlm-roberta": XLMRobertaModel, position ids computed from padding (padding_idx=1).
    """
    import torch
    from transformers import BertConfig, BertModel, XLMRobertaConfig, XLMRobertaModel

    out = Path(out_dir)
    tok = make_tiny_tokenizer(out)
    common = {
        "vocab_size": tok.get_vocab_size(),
        "hidden_size": hidden,
        "num_hidden_layers": num_layers,
        "num_attention_heads": heads,
        "intermediate_size": hidden * 2,
        "pad_token_id": PAD_ID,
        "bos_token_id": 0,
        "eos_token_id": 2,
    }
    torch.manual_seed(seed)
    model: Any
    if arch == "bert":
        cfg = BertConfig(max_position_embeddings=512, type_vocab_size=2, **common)
        model = BertModel(cfg, add_pooling_layer=False)
    elif arch in ("xlm-roberta", "xlmr"):
        cfg = XLMRobertaConfig(max_position_embeddings=514, type_vocab_size=1, **common)
        model = XLMRobertaModel(cfg, add_pooling_layer=False)
    else:
        raise ValueError(f"unknown arch {arch!r}: use 'bert' or 'xlm-roberta'")
    model.save_pretrained(str(out))
    return out


def make_tiny_checkpoint(
    tmp_dir: str | Path,
    task: str,
    labels: list[str],
    *,
    backbone_dir: str | Path | None = None,
    arch: str = "bert",
    seed: int = 0,
    **cfg: Any,
) -> Path:
    """Build an XMixupModel on a tiny backbone and save it as a checkpoint in tmp_dir/"checkpoint".

    `cfg` are extra XMixupConfig fields (method, mixup_layer, gate, pooling, max_length, ...).
    The backbone is built in tmp_dir/"backbone" unless backbone_dir is given.
    The head and gate are randomly initialised with `seed` so outputs are not trivially uniform.
    """
    import torch

    from training.config import XMixupConfig
    from training.modeling import XMixupModel

    tmp = Path(tmp_dir)
    if backbone_dir is None:
        backbone_dir = make_tiny_backbone(tmp / "backbone", arch=arch, seed=seed)
    config = XMixupConfig(task=task, labels=list(labels), backbone=str(backbone_dir), **cfg)
    torch.manual_seed(seed)
    model = XMixupModel.from_backbone(backbone_dir, config)
    model.eval()
    out = tmp / "checkpoint"
    model.save_pretrained(out)
    return out


def make_tiny_model(
    backbone_dir: str | Path,
    task: str,
    labels: list[str] | None = None,
    *,
    sharpen: float = 8.0,
    seed: int = 0,
    **cfg: Any,
) -> Any:
    """An XMixupModel (eval mode) on a tiny backbone, with sharpened attention.

    A random encoder (init std 0.02) attends almost uniformly, so λ would hardly depend on the
    inputs; multiplying every layer's query/key weights by `sharpen` gives peaked attention
    like a pretrained encoder's. `sharpen=1.0` leaves the backbone as built.
    """
    import torch

    from training.config import XMixupConfig
    from training.modeling import XMixupModel

    if labels is None:
        labels = [] if task == "qa" else ["B-X", "I-X", "O"] if task == "tag" else ["a", "b", "c"]
    config = XMixupConfig(task=task, labels=list(labels), **cfg)
    torch.manual_seed(seed)
    model = XMixupModel.from_backbone(backbone_dir, config)
    if sharpen != 1.0:
        with torch.no_grad():
            for layer in model.layers:
                layer.attention.self.query.weight.mul_(sharpen)
                layer.attention.self.key.weight.mul_(sharpen)
    return model.eval()


def random_batch(
    lengths: list[int], seed: int, vocab: int = 600, pad_id: int = PAD_ID
) -> tuple[Any, Any]:
    """(input_ids, attention_mask) for items of the given real lengths, right-padded with pad_id.

    Real ids avoid the special ids 0..4, so XLM-R position ids (computed from padding) are
    exactly those of the real tokens.
    """
    import torch

    g = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.full((len(lengths), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(lengths), width), dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(5, vocab, (n,), generator=g)
        mask[i, :n] = 1
    return ids, mask


def pad_items(items: list[Any], pad_id: int = PAD_ID) -> tuple[Any, Any]:
    """Right-pad 1-D id tensors into (input_ids, attention_mask) [B, max_len]."""
    import torch

    width = max(int(x.shape[0]) for x in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for i, x in enumerate(items):
        ids[i, : x.shape[0]] = x
        mask[i, : x.shape[0]] = 1
    return ids, mask


def trust_records(task: str, labels: list[str]) -> list[dict[str, Any]]:
    """Records of `task` whose sources are the tiny corpus' English sentences (for fitting a
    trust head: the fit only reads the sources and needs labels the model knows)."""
    english = _SENTENCES[:15]
    rows: list[dict[str, Any]] = []
    for i, en in enumerate(english):
        target = _SENTENCES[15 + i % 10]
        row: dict[str, Any] = {"id": f"{task}-{i}", "lang": "de"}
        if task == "classify":
            row.update(target=target, source=en, label=labels[i % len(labels)])
        elif task == "tag":
            tag = "O" if "O" in labels else labels[0]
            t_words, s_words = target.split(), en.split()
            row.update(target_tokens=t_words, target_tags=[tag] * len(t_words))
            row.update(source_tokens=s_words, source_tags=[tag] * len(s_words))
        else:
            first_t, first_s = target.split()[0], en.split()[0]
            row.update(question="Was?", context=target, source_question="What?", source_context=en)
            row["answers"] = [{"text": first_t, "answer_start": 0}]
            row["source_answers"] = [{"text": first_s, "answer_start": 0}]
        rows.append(row)
    return rows


def fit_tiny_trust(checkpoint: str | Path, seed: int = 0) -> dict[str, Any]:
    """Fit the checkpoint's trust head on `trust_records` and rewrite it in place."""
    from transformers import AutoTokenizer

    from training.modeling import XMixupModel
    from training.trust import fit_trust_head

    model = XMixupModel.from_pretrained(checkpoint)
    c = model.config
    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
    records = trust_records(c.task, list(c.labels))
    # A strong L2: 15 tiny items are separable, and an unregularised fit would saturate the
    # probabilities at exactly 0 or 1 in float32.
    summary = fit_trust_head(model, tokenizer, records, c.task, seed=seed, l2=1.0)
    model.save_pretrained(checkpoint)
    return summary
