//! Benchmarks for multiproc (filled in below).
fn main() {
    multiproc::init();
}
