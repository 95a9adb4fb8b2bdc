using Spectre.Console;

namespace Qed.Cli;

/// <summary>
/// The -p progress display on stderr: a Spectre.Console bar on a terminal, qemu-img's "(x.xx/100%)" lines otherwise
/// (so logs stay readable). Fed by the library's <see cref="ImageProgress"/> reports.
/// </summary>
internal static class ProgressDisplay
{
    /// <summary>Runs <paramref name="work"/>, showing its progress when <paramref name="enabled"/>.</summary>
    public static async Task RunAsync(bool enabled, string description, Func<IProgress<ImageProgress>?, Task> work)
    {
        if (!enabled)
        {
            await work(null);
            return;
        }
        if (Console.IsErrorRedirected)
        {
            var plain = new PlainProgress();
            await work(plain);
            plain.Finish();
            return;
        }
        await RunWithBarAsync(description, work);
    }

    // Separate and not inlined so that Spectre.Console is only loaded when a bar is shown (start-up time of every command).
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static async Task RunWithBarAsync(string description, Func<IProgress<ImageProgress>?, Task> work)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
        await console.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new TransferSpeedColumn(), new RemainingTimeColumn())
            .StartAsync(async context =>
            {
                var task = context.AddTask(description, maxValue: 1);
                await work(new SpectreProgress(task));
                task.Value = task.MaxValue;
            });
    }

    /// <summary>Reports from many threads arrive out of order; only growth is shown.</summary>
    private sealed class SpectreProgress(ProgressTask task) : IProgress<ImageProgress>
    {
        private long _shown = -1;

        public void Report(ImageProgress value)
        {
            lock (this)
            {
                if (value.BytesDone <= _shown) return;
                _shown = value.BytesDone;
                task.MaxValue = Math.Max(1, value.TotalBytes);
                task.Value = value.BytesDone;
            }
        }
    }

    private sealed class PlainProgress : IProgress<ImageProgress>
    {
        private int _shownPercent = -1;

        public void Report(ImageProgress value)
        {
            int percent = value.TotalBytes == 0 ? 100 : (int)(value.BytesDone * 100 / value.TotalBytes);
            lock (this)
            {
                if (percent <= _shownPercent) return;
                _shownPercent = percent;
                Console.Error.Write($"    ({percent:0.00}/100%)\r");
            }
        }

        public void Finish()
        {
            Report(new ImageProgress(1, 1));
            Console.Error.WriteLine();
        }
    }
}
