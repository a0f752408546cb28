"""tunelab: fine-tune pre-trained models on your own data, with the strategy the literature recommends."""

__version__ = "0.1.0"
