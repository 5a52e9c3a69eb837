"""BlockExchange experiments (`testbed experiment blockexchange`): the questions the block
protocol's engineers ask of a build, each answered with a table and a plot, on any image and
either era's metric names, and for two images side by side."""
