/* evb_tokenizer.h -- text to token ids and back.
 *
 * Two on-disk formats are read, detected by content:
 *   - the llama2.c tokenizer.bin export (int32 max_token_length, then per token float32 score, int32 len,
 *     len bytes), encoded the way llama2.c run.c encodes: a dummy-prefix " " then score-ordered merges,
 *     byte fallback to <0xNN> tokens (id = byte + 3);
 *   - Hugging Face tokenizer.json with a BPE model, encoded and decoded as Hugging Face's tokenizers library
 *     does: SentencePiece-style (Metaspace / "▁" replacement, byte_fallback: Llama-2, Mistral, Gemma) and
 *     byte-level (GPT-2, Llama-3, Qwen). tests/test_tokenizer_conformance compares the ids and texts with an
 *     independent implementation on the real Llama-3, Qwen3, Llama-2 and Gemma-3 tokenizer.json files.
 * Ownership: evb_tokenizer_load allocates the tokenizer; evb_tokenizer_free releases it. Encode and decode
 * allocate their output with malloc; the caller frees it with free(). */
#ifndef EVB_TOKENIZER_H
#define EVB_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct evb_tokenizer evb_tokenizer;

/* Loads "path" (a tokenizer.bin or a tokenizer.json). On error returns EVB_EIO/EVB_EFORMAT with a message
 * naming the file and what is wrong, and sets *out to NULL. */
int evb_tokenizer_load(const char *path, evb_tokenizer **out);
void evb_tokenizer_free(evb_tokenizer *t);

int evb_tokenizer_vocab_size(const evb_tokenizer *t);
/* The first id the post-processor puts before the text (tokenizer.bin: 1); -1 when it puts none. */
int evb_tokenizer_bos(const evb_tokenizer *t);
int evb_tokenizer_eos(const evb_tokenizer *t); /* -1 when the tokenizer has none */

/* Encodes len bytes of text. add_bos adds the special tokens of the tokenizer.json's post-processor before
 * and after the text, as Hugging Face's add_special_tokens=True does (nothing where it adds none; the BOS of
 * a tokenizer.bin). Special tokens written in the text become their ids. Writes a malloc'd array of *n ids
 * to *tokens. Empty text gives only the post-processor's tokens (or nothing). */
int evb_tokenizer_encode(const evb_tokenizer *t, const char *text, size_t len, int add_bos,
                         int32_t **tokens, size_t *n);

/* Decodes n ids into a malloc'd NUL-terminated string (*len bytes, not counting the NUL). tokenizer.json:
 * as Hugging Face's decode(ids, skip_special_tokens=True) (special added tokens give no text, the
 * decoder's steps as tokenizer.json lists them, invalid UTF-8 as U+FFFD: the text is valid UTF-8).
 * tokenizer.bin: as llama2.c (BOS and EOS give no text, the space after BOS is dropped, "<0xNN>" pieces
 * give their byte, so the text may be invalid UTF-8). An id outside [0, vocab_size) is EVB_ERANGE. */
int evb_tokenizer_decode(const evb_tokenizer *t, const int32_t *tokens, size_t n, char **text, size_t *len);

/* The vocabulary as a GGUF file embeds it (llama.cpp's tokenizer.ggml.* keys). model "llama" (SentencePiece:
 * a tokenizer.bin, or a tokenizer.json with pieces in U+2581 form and byte fallback): tokens with spaces as
 * U+2581, scores (tokenizer.bin: its own; tokenizer.json: minus the rank of the merge that makes the piece, so
 * that llama.cpp's highest-score-first merging follows the merge order; -1e9 for pieces no merge makes).
 * model "gpt2" (byte-level BPE): tokens as in the vocabulary, merges "a b" in rank order, scores 0. types:
 * 1 normal, 2 unknown, 3 control (special added tokens, BOS/EOS of a tokenizer.bin), 4 user-defined (other
 * added tokens), 6 byte ("<0xNN>"). Everything is malloc'd; evb_tokenizer_vocab_free releases it. */
typedef struct evb_tokenizer_vocab {
    const char *model;     /* "llama" or "gpt2" */
    const char *pre;       /* gpt2: llama.cpp's name of the split pattern ("llama-bpe" for Llama-3's, "qwen2"),
                              "default" for one it has no name for (llama.cpp then splits as GPT-2 does) */
    int n;                 /* tokens, = vocab size */
    char **tokens;         /* [n] NUL-terminated */
    float *scores;         /* [n] */
    int32_t *types;        /* [n] */
    char **merges;         /* [n_merges] "a b" (gpt2) */
    int n_merges;
    int bos, eos, unk;     /* -1 when absent */
    int add_bos;           /* encoding puts BOS first */
    int add_space_prefix;  /* llama: a space is put before the text, as the SentencePiece normalizer does */
} evb_tokenizer_vocab;

int  evb_tokenizer_vocab_export(const evb_tokenizer *t, evb_tokenizer_vocab *v);
void evb_tokenizer_vocab_free(evb_tokenizer_vocab *v);

#ifdef __cplusplus
}
#endif
#endif
