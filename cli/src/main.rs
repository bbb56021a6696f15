fn main() {
    sluice_cli::main()
}
