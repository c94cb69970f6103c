fn main() {}
mod front;
