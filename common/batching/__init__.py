"""The trainer with other batches than the book's: whole sentences, variable-length windows."""
