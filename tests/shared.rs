mod suite;
fn main() {
    suite::main("shared", &[], |_| false);
}
