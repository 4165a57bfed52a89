/* save.h -- what the other writers of Hugging Face directories share with evb_model_save (private). */
#ifndef EVB_MODELS_SAVE_H
#define EVB_MODELS_SAVE_H
#include "evobudget/evb_model.h"

#include <jansson.h>

/* The config.json evb_model_save writes for m with weights in dtype ("F32", "F16", "BF16"): the source's own
 * config.json (Hugging Face models) or a Llama configuration built from m->config, with "torch_dtype" set and
 * the dropped sub-blocks listed under "evobudget_dropped". */
int evb_model_hf_config(const evb_model *m, const char *dtype, json_t **out);
#endif
