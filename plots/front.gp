# front.gp -- the Pareto front of a run (plots/front.dat: x fitness), its best point and the runs given to
# `evobudget plot --with` (plots/baselines.dat: x fitness, one line per point, labels in vars.gp), each
# point with its own marker and key entry. Run by `evobudget plot` (datadir, ext).
if (ext eq 'png') { set terminal pngcairo size 900,560 enhanced font 'DejaVu Sans,10' } else { set terminal svg size 900,560 enhanced font 'DejaVu Sans,10' background rgb 'white' }
load datadir.'/plots/vars.gp'
set output datadir.'/front.'.ext
set title run_title noenhanced
set xlabel front_xlabel
set ylabel front_ylabel noenhanced
set grid
set key outside right top noenhanced box
set offsets graph 0.05, graph 0.05, graph 0.1, graph 0.1
# a log scale when every fitness is positive, so that close values stay apart
stats datadir.'/plots/front.dat' u 2 nooutput
lo = STATS_min
stats datadir.'/plots/baselines.dat' u 2 nooutput
if (STATS_min < lo) { lo = STATS_min }
if (lo > 0) { set logscale y; set offsets graph 0.05, graph 0.05, 0, 0 }
plot datadir.'/plots/front.dat' u 1:2 w linespoints pt 7 ps 0.6 lc rgb '#1f77b4' t "front of the run (the search's own fitness)", \
     for [i=1:n_points] datadir.'/plots/baselines.dat' every ::i-1::i-1 u 1:2 w points pt (i == 1 ? 7 : 3 + i) ps (i == 1 ? 1.6 : 1.4) lc (i == 1 ? 7 : i) t point_labels[i]
