# sensitivity.gp -- the sensitivity profile of `evobudget sensitivity` as a heat map: a row per unit (grouped
# by layer type, blocks in order), a column per level, the colour log10 of the KL of the model with that unit
# alone at that level (plots/sensitivity.dat: level row log10(KL) label). Run by `evobudget plot` (datadir, ext).
if (ext eq 'png') { set terminal pngcairo size 900,900 enhanced font 'DejaVu Sans,9' } else { set terminal svg size 900,900 enhanced font 'DejaVu Sans,9' background rgb 'white' }
load datadir.'/plots/vars.gp'
set output datadir.'/sensitivity.'.ext
set title sens_title noenhanced
set xlabel 'level (sensitivity.csv gives each level''s value and cost)'
set ylabel 'unit'
set cblabel 'log10 KL'
set xrange [-0.5:max_level + 0.5]
set yrange [-0.5:n_rows - 0.5]
set xtics 1 nomirror
set ytics nomirror noenhanced font ',7'
set palette defined (0 '#fff7ec', 0.35 '#fdbb84', 0.7 '#e34a33', 1 '#7f0000')
set style fill solid 1.0 noborder
unset key
step = n_rows <= 64 ? 1 : int(n_rows / 48) + 1
plot datadir.'/plots/sensitivity.dat' u 1:2:(0.5):(0.5):3:yticlabels(int($2) % step == 0 ? stringcolumn(4) : '') w boxxyerror fc palette
