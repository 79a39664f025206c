"""Hugging Face interop: attnlab networks as transformers models and back.

- mapping.py: how one state_dict's tensors become another's (renamed, transposed, split);
- gpt2.py, llama.py, bert.py: each family's config and weight names (GPT2LMHeadModel,
  LlamaForCausalLM / Qwen3ForCausalLM, BertFor*);
- tokenizer.py: attnlab's tokenizers as tokenizer.json + tokenizer_config.json;
- export.py: `attnlab-export ckpt_path=... out=DIR`;
- from_hf.py: `init.from_hf=DIR`, a run started from a local Hugging Face checkpoint.

`transformers` is an optional dependency (`pip install attnlab[hf]`): only export and import
load it (`hf.transformers_module`), when they run.
"""
