fn main() {}
mod exec;
