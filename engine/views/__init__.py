"""Views of classes and pipelines for people: the board as text, the state diagram."""
