"""The painters-gguf command line (installed as `painters_gguf.cli`): parse, call the library, render."""
