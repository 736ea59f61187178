fn main() {
    starina_spec::build::component();
}
