"""The engine: pure PyTorch + torchvision. Never imports Qt or SQLAlchemy (DESIGN.md rule 1)."""
