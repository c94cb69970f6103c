mod runtime;
fn main() {}
