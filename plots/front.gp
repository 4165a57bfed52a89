# front.gp -- the Pareto front of a run (plots/front.dat: x fitness), its best point and the runs given to
# `evobudget plot --with` (plots/baselines.dat: x fitness, one line per point, labels in vars.gp), each
# point with its own marker and key entry. For a sweep (front_targets = 1) front.dat holds one point per
# target (x, KL on all calibration tokens, target), each labelled with its target, heldout.dat the held-out
# KL of the search's allocation and of the uniform one per target (x, KL, KL, target; NaN where the sweep
# scored no held-out text), drawn as two more lines when n_heldout and n_uniform say there are such points,
# and baselines.dat only the --with runs. Run by `evobudget plot` (datadir, ext).
if (ext eq 'png') { set terminal pngcairo size 900,560 enhanced font 'DejaVu Sans,10' } else { set terminal svg size 900,560 enhanced font 'DejaVu Sans,10' background rgb 'white' }
load datadir.'/plots/vars.gp'
# the held-out lines of a sweep, none when vars.gp does not say
if (!exists('n_heldout')) { n_heldout = 0; heldout_key = '' }
if (!exists('n_uniform')) { n_uniform = 0; uniform_key = '' }
set output datadir.'/front.'.ext
set title run_title noenhanced
set xlabel front_xlabel
set ylabel front_ylabel noenhanced
set grid
# the key below the graph in at most two columns, the bottom margin grown to hold its rows
set key below noenhanced box maxcols 2
n_keys = n_points + 1 + (n_heldout > 0) + (n_uniform > 0)
set bmargin 5 + ceil(n_keys / 2.0) * 1.25
# the range of x and y over every point drawn
xlo = 1e300; xhi = -1e300; ylo = 1e300
do for [f in 'front baselines'] {
  if ((f eq 'front' && n_front > 0) || (f eq 'baselines' && n_points > 0)) {
    stats datadir.'/plots/'.f.'.dat' u 1 nooutput
    if (STATS_min < xlo) { xlo = STATS_min }
    if (STATS_max > xhi) { xhi = STATS_max }
    stats datadir.'/plots/'.f.'.dat' u 2 nooutput
    if (STATS_min < ylo) { ylo = STATS_min }
  }
}
do for [c=2:3] {
  if ((c == 2 && n_heldout > 0) || (c == 3 && n_uniform > 0)) {
    stats datadir.'/plots/heldout.dat' u c nooutput
    if (STATS_min < ylo) { ylo = STATS_min }
  }
}
# x: the points' span padded by 8% a side, at least 2% of its centre wide (1 when the centre is 0), so that
# one point or a narrow front gets a few round ticks; about five ticks at a step of 1, 2 or 5 times a power
# of ten, each with as many decimals as the step needs
span = xhi - xlo
mid = (xhi + xlo) / 2.0
minspan = abs(mid) * 0.02
if (minspan == 0) { minspan = 1 }
if (span < minspan) { xlo = mid - minspan / 2.0; xhi = mid + minspan / 2.0 } else { xlo = xlo - 0.08 * span; xhi = xhi + 0.08 * span }
raw = (xhi - xlo) / 5.0
mag = 10.0 ** floor(log10(raw))
r = raw / mag
xstep = (r < 1.5 ? 1 : r < 3.5 ? 2 : r < 7.5 ? 5 : 10) * mag
xdec = xstep >= 1 ? 0 : int(ceil(-log10(xstep) - 1e-9))
set xrange [xlo:xhi]
set xtics xstep
set format x sprintf('%%.%df', xdec)
# y: a log scale when every fitness is positive, so that close values stay apart
set offsets 0, 0, graph 0.1, graph 0.1
if (ylo > 0) { set logscale y; set offsets 0, 0, 0, 0 }
# (gnuplot 5.4 takes no 'else if' after a continued plot line, hence the nested if; a sweep's held-out lines
# are all NaN and have no key entry when it has no such points, since an empty 'for' still adds an entry)
if (front_targets && n_points == 0) {
  plot datadir.'/plots/front.dat' u 1:2 w linespoints pt 7 ps 1.2 lc rgb '#1f77b4' t front_key, \
       datadir.'/plots/front.dat' u 1:2:(sprintf('%g', $3)) w labels offset char 0,1 tc rgb '#1f77b4' notitle, \
       datadir.'/plots/heldout.dat' u 1:(n_heldout > 0 ? $2 : NaN) w linespoints pt 5 ps 1.2 lc rgb '#2ca02c' t (n_heldout > 0 ? heldout_key : ''), \
       datadir.'/plots/heldout.dat' u 1:(n_uniform > 0 ? $3 : NaN) w linespoints pt 9 ps 1.2 dt 2 lc rgb '#ff7f0e' t (n_uniform > 0 ? uniform_key : '')
} else { if (front_targets) {
  plot datadir.'/plots/front.dat' u 1:2 w linespoints pt 7 ps 1.2 lc rgb '#1f77b4' t front_key, \
       datadir.'/plots/front.dat' u 1:2:(sprintf('%g', $3)) w labels offset char 0,1 tc rgb '#1f77b4' notitle, \
       datadir.'/plots/heldout.dat' u 1:(n_heldout > 0 ? $2 : NaN) w linespoints pt 5 ps 1.2 lc rgb '#2ca02c' t (n_heldout > 0 ? heldout_key : ''), \
       datadir.'/plots/heldout.dat' u 1:(n_uniform > 0 ? $3 : NaN) w linespoints pt 9 ps 1.2 dt 2 lc rgb '#ff7f0e' t (n_uniform > 0 ? uniform_key : ''), \
       for [i=1:n_points] datadir.'/plots/baselines.dat' every ::i-1::i-1 u 1:2 w points pt 3 + i ps 1.4 lc i t point_labels[i]
} else {
  plot datadir.'/plots/front.dat' u 1:2 w linespoints pt 7 ps 0.6 lc rgb '#1f77b4' t front_key, \
       for [i=1:n_points] datadir.'/plots/baselines.dat' every ::i-1::i-1 u 1:2 w points pt (i == 1 ? 7 : 3 + i) ps (i == 1 ? 1.6 : 1.4) lc (i == 1 ? 7 : i) t point_labels[i]
} }
