"""PyTorch's word_language_model procedure (pytorch/examples, main.py with its defaults: LSTM,
emsize = nhid = 200, 2 layers, dropout 0.2, bptt 35, batch 20, plain SGD at lr 20 divided by 4
whenever the held-out loss does not improve, gradient norm clipped to 0.25, untied), run on the
same token streams as kiln, for the same wall time, and scored the way `kiln score` scores.

    python word_lm_pytorch.py MODEL.onnx TRAIN.txt VALID.txt SECONDS

MODEL.onnx is the kiln model trained on the same text: its vocabulary and tokenizer (read with
onnx from the file's metadata) turn the texts into the same token ids kiln used, so both models
predict the same tokens. Prints one JSON object: words per second while training, epochs, and
the held-out cross-entropy and perplexity, read as one stream with the state carried.
"""
import json
import math
import sys
import time

import onnx
import torch
import torch.nn as nn

PUNCT_EXTRA = set("“”‘’«»…—–¿¡")


def words(spec, text):
    """kiln's tokenizer (infer/src/text.rs): whitespace, and punctuation marks as tokens except
    an apostrophe or hyphen between two letters; `<` and `>` stay inside words."""
    if spec["lowercase"]:
        text = text.lower()
    out = []
    for chunk in text.split():
        if not spec["split_punctuation"]:
            out.append(chunk)
            continue
        word = ""
        for i, c in enumerate(chunk):
            joiner = c in "'-" and 0 < i < len(chunk) - 1 and chunk[i - 1].isalnum() and chunk[i + 1].isalnum()
            punct = (c.isascii() and not c.isalnum() and not c.isspace() and c not in "<>" and c.isprintable()) or c in PUNCT_EXTRA
            if punct and not joiner:
                if word:
                    out.append(word)
                    word = ""
                out.append(c)
            else:
                word += c
        if word:
            out.append(word)
    return out


def stream(path, spec, index, unk, eos):
    ids = [eos]
    with open(path, encoding="utf-8") as f:
        for line in f:
            toks = words(spec, line)
            if not toks:
                continue
            ids.extend(index.get(w, unk) for w in toks)
            ids.append(eos)
    return torch.tensor(ids, dtype=torch.long)


class RNNModel(nn.Module):
    """word_language_model's RNNModel for the LSTM, untied."""

    def __init__(self, ntoken, ninp=200, nhid=200, nlayers=2, dropout=0.2):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = nn.LSTM(ninp, nhid, nlayers, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        self.nlayers, self.nhid = nlayers, nhid
        initrange = 0.1
        nn.init.uniform_(self.encoder.weight, -initrange, initrange)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -initrange, initrange)

    def forward(self, x, hidden):
        emb = self.drop(self.encoder(x))
        output, hidden = self.rnn(emb, hidden)
        output = self.drop(output)
        return torch.log_softmax(self.decoder(output), dim=-1), hidden

    def init_hidden(self, bsz):
        w = next(self.parameters())
        return (w.new_zeros(self.nlayers, bsz, self.nhid), w.new_zeros(self.nlayers, bsz, self.nhid))


def batchify(data, bsz):
    nbatch = data.size(0) // bsz
    return data[: nbatch * bsz].view(bsz, -1).t().contiguous()  # [len, bsz]


def repackage(h):
    return tuple(v.detach() for v in h)


def score(model, ids, chunk=256):
    """As `kiln score`: one stream, the state carried, every token after the first predicted."""
    model.eval()
    total, hidden = 0.0, model.init_hidden(1)
    with torch.no_grad():
        for i in range(0, len(ids) - 1, chunk):
            n = min(chunk, len(ids) - 1 - i)
            out, hidden = model(ids[i : i + n].view(-1, 1), hidden)
            total += nn.functional.nll_loss(out.view(n, -1), ids[i + 1 : i + 1 + n], reduction="sum").item()
    return total / (len(ids) - 1)


def main():
    model_path, train_path, valid_path, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    props = {p.key: p.value for p in onnx.load(model_path).metadata_props}
    vocab = json.loads(props["kiln.vocab"])
    spec = json.loads(props["kiln.tokenizer"])
    index = {w: i for i, w in enumerate(vocab)}
    unk, eos = index["<unk>"], index["<eos>"]
    train = stream(train_path, spec, index, unk, eos)
    valid = stream(valid_path, spec, index, unk, eos)
    torch.manual_seed(1111)
    bptt, lr, clip = 35, 20.0, 0.25
    model = RNNModel(len(vocab))
    data = batchify(train, 20)
    criterion = nn.NLLLoss()
    start = time.time()
    trained, epochs, best = 0, 0, None
    training_seconds = 0.0
    while time.time() - start < seconds:
        model.train()
        hidden = model.init_hidden(20)
        t0 = time.time()
        for i in range(0, data.size(0) - 1, bptt):
            if time.time() - start >= seconds:
                break
            n = min(bptt, data.size(0) - 1 - i)
            x, y = data[i : i + n], data[i + 1 : i + 1 + n].reshape(-1)
            hidden = repackage(hidden)
            model.zero_grad()
            out, hidden = model(x, hidden)
            loss = criterion(out.view(-1, len(vocab)), y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            for p in model.parameters():
                p.data.add_(p.grad, alpha=-lr)
            trained += y.numel()
        training_seconds += time.time() - t0
        epochs += 1
        val = score(model, valid)
        print(f"pytorch epoch {epochs}: held-out ppl {math.exp(val):.2f} ({time.time() - start:.0f} s)", file=sys.stderr)
        if best is None or val < best:
            best = val
        else:
            lr /= 4.0
    # main.py reports the best model it saved (at an epoch's end); the last one may be better.
    final = min(score(model, valid), best if best is not None else math.inf)
    json.dump(
        {
            "words_per_second": trained / training_seconds,
            "epochs": epochs,
            "seconds": time.time() - start,
            "predictions": len(valid) - 1,
            "cross_entropy": final,
            "perplexity": math.exp(final),
            "threads": torch.get_num_threads(),
        },
        sys.stdout,
    )


if __name__ == "__main__":
    main()
