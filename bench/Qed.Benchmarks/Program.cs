using BenchmarkDotNet.Running;

// dotnet run -c Release --project bench/Qed.Benchmarks -- --filter '*'   (add --job short for a quick pass)
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);

internal partial class Program;
