"""The QQ side of xiaoyou: the NoneBot2 app (composition root), the CLI and the QQ plugins."""
