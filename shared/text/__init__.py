"""English prose that ships with Debian, and a BPE tokenizer trained on it without the Hub."""
