//! Eval: identify and classify over a labelled corpus.
