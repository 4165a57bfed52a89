# convergence.gp -- best fitness of a run against generation and against candidate evaluations
# (plots/convergence.dat: generation evaluations best_fitness seconds). Run by `evobudget plot` (datadir, ext).
if (ext eq 'png') { set terminal pngcairo size 1000,420 enhanced font 'DejaVu Sans,10' } else { set terminal svg size 1000,420 enhanced font 'DejaVu Sans,10' background rgb 'white' }
load datadir.'/plots/vars.gp'
set output datadir.'/convergence.'.ext
set multiplot layout 1,2 title run_title.': convergence' noenhanced
set grid
set ylabel "parent's fitness on its generation's\nminibatch (KL per token)"
set xlabel 'generation'
plot datadir.'/plots/convergence.dat' u 1:3 w lines lw 2 lc rgb '#1f77b4' notitle
set xlabel 'candidate evaluations'
plot datadir.'/plots/convergence.dat' u 2:3 w lines lw 2 lc rgb '#2ca02c' notitle
unset multiplot
