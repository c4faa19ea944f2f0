# A small R Shiny app for `jhsingle-native-proxy --app shiny --presentation-path app.R`:
# the slider's value goes to the R server over Shiny's websocket, which renders the text.
library(shiny)

ui <- fluidPage(
  titlePanel("Shiny behind jhsingle-native-proxy", windowTitle = "Shiny demo"),
  sliderInput("stars", "Stars", min = 1, max = 5, value = 3, step = 1),
  textOutput("drawn")
)

server <- function(input, output, session) {
  output$drawn <- renderText({
    paste0("The server drew ", input$stars, " stars: ", strrep("\u2605", input$stars))
  })
}

shinyApp(ui, server)
