"""fimls: AI code completion for every editor through DeepSeek FIM."""

__version__ = "0.1.0"
